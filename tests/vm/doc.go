// Package vm is the VM tier of the tests: it boots Debian's own kernel (linux-image-amd64, which has ESP and xfrm
// interfaces, unlike the machines the tests run on) in qemu, with an initramfs it builds from busybox, the lab's
// tools and charon from this machine's Debian packages, the kernel's networking modules, the project's static
// binaries and a test binary of the project's end-to-end tests. The guest runs those tests in namespaces as the
// host would, on the kernel's ESP, and prints `go test -v` output on its serial console, which the host test
// reads back as results of its own.
//
// qemu uses KVM when it really runs a guest here and TCG otherwise (10–30 Mbit/s: the VM proves behaviour, it
// never measures speed). tests/deps.sh test installs qemu and busybox and unpacks the kernel under .run/vm.
package vm
