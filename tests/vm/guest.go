package vm

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Kernel is Debian's kernel as tests/deps.sh unpacks it (never installed on the machine running the tests).
type Kernel struct {
	Root    string // the unpacked package: Root/boot/vmlinuz-RELEASE, Root/lib/modules/RELEASE
	Release string
}

// FindKernel finds the kernel tests/deps.sh unpacked under the repository's .run/vm.
func FindKernel(repoRoot string) (Kernel, error) {
	dir := filepath.Join(repoRoot, ".run", "vm", "linux")
	ready, _ := filepath.Glob(filepath.Join(dir, "*.ready"))
	if len(ready) != 1 {
		return Kernel{}, fmt.Errorf("vm: no kernel unpacked in %s: run tests/deps.sh test", dir)
	}
	release, err := os.ReadFile(ready[0])
	if err != nil {
		return Kernel{}, err
	}
	return Kernel{Root: filepath.Join(dir, "root"), Release: strings.TrimSpace(string(release))}, nil
}

// Vmlinuz is the kernel image qemu boots.
func (k Kernel) Vmlinuz() string { return filepath.Join(k.Root, "boot", "vmlinuz-"+k.Release) }

//go:embed init.sh
var initScript []byte

// labTools are the programs the lab (tests/lab, tests/cloudlab, tests/toridetest) runs, taken from this machine's
// Debian packages; busybox provides the rest (sh, mount, sysctl, ...).
var labTools = []string{"ip", "nft", "unshare", "nsenter", "ping", "sysctl", "swanctl", "kmod", "vtysh"}

// labDaemons are the lab's programs that are not on PATH: FRR's bgpd, the cloud gateways' BGP speaker.
var labDaemons = []string{"/usr/lib/frr/bgpd"}

// labModules are loaded at boot: what ESP and xfrm interfaces need, and the crypto that the kernel's random
// number generator needs before any of it works. Everything else below kernelDirs loads on demand.
var labModules = []string{"esp4", "xfrm_user", "xfrm_interface", "xfrm_algo", "aesni_intel", "gcm", "seqiv",
	"echainiv", "authenc", "drbg", "jitterentropy_rng", "sha3_generic", "veth", "tun", "nf_tables"}

var kernelDirs = []string{"kernel/net", "kernel/crypto", "kernel/arch/x86/crypto", "kernel/lib"}

// Guest is what a lab VM runs: test binaries (built with `go test -c`), each in its package's directory of a copy
// of the repository's files Files, with the project's binaries in Bin.
type Guest struct {
	Suites []Suite
	Bin    map[string]string // name → the binary on this machine; the guest finds them through TORIDE_BIN_DIR
	Files  map[string]string // a path relative to the repository → the file on this machine
}

// Suite is one package's test binary and the tests of it the VM runs.
type Suite struct {
	Package    string // relative to the repository: "tests"
	TestBinary string
	Run        string // the -test.run pattern
}

// LabImage makes the initramfs of a lab VM: busybox, kmod and the lab's tools with their libraries, charon with
// its plugins, the kernel's networking and crypto modules, and the guest's files.
func LabImage(k Kernel, g Guest) (*Initramfs, error) {
	r := &Initramfs{}
	r.Data("init", 0o755, initScript)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("vm: %w (tests/deps.sh test installs busybox-static)", err)
	}
	r.File("bin/busybox", busybox)
	for _, tool := range labTools {
		p, err := exec.LookPath(tool)
		if err != nil {
			return nil, fmt.Errorf("vm: %w (tests/deps.sh test installs it)", err)
		}
		r.Program(p)
	}
	for _, p := range labDaemons {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("vm: %w (tests/deps.sh test installs it)", err)
		}
		r.Program(p)
	}
	kmod, _ := exec.LookPath("kmod")
	for _, n := range []string{"modprobe", "insmod", "rmmod", "lsmod", "depmod"} {
		r.Symlink("usr/sbin/"+n, kmod)
	}
	// charon and its plugins (each with its libraries), and libgcc_s, which glibc loads for thread cancellation
	// without ldd ever listing it.
	r.Program("/usr/lib/ipsec/charon")
	plugins, _ := filepath.Glob("/usr/lib/ipsec/plugins/*.so")
	for _, p := range plugins {
		r.Program(p)
	}
	for _, p := range []string{"/usr/lib/x86_64-linux-gnu/libgcc_s.so.1", "/lib/x86_64-linux-gnu/libgcc_s.so.1"} {
		if _, err := os.Stat(p); err == nil {
			r.File(p, p)
			break
		}
	}
	r.File("etc/strongswan.conf", "/etc/strongswan.conf")
	r.Tree("etc/strongswan.d", "/etc/strongswan.d")
	r.Data("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	r.Data("etc/group", 0o644, []byte("root:x:0:\n"))
	// vtysh refuses to run without its configuration, and asks PAM (absent here) for any user it does not know.
	r.Data("etc/frr/vtysh.conf", 0o644, []byte("username root nopassword\n"))
	r.Modules(k.Root, k.Release, kernelDirs, []string{"veth", "tun", "dummy"})
	r.Data("toride/modules", 0o644, []byte(strings.Join(labModules, "\n")+"\n"))

	env := []string{"TORIDE_LAB_REQUIRED=1", "TORIDE_VM=1", "TORIDE_BIN_DIR=/toride/bin"}
	for name, src := range g.Bin {
		r.File("toride/bin/"+name, src)
	}
	for rel, src := range g.Files {
		r.File("toride/src/"+rel, src)
	}
	for i, s := range g.Suites {
		dir := fmt.Sprintf("toride/suites/%02d/", i)
		r.File(dir+"test", s.TestBinary)
		r.Data(dir+"name", 0o644, []byte(s.Package))
		r.Data(dir+"run", 0o644, []byte(s.Run))
		r.Data("toride/src/"+s.Package+"/.keep", 0o644, nil)
	}
	r.Data("toride/env", 0o644, []byte(strings.Join(env, " ")))
	return r, r.err
}
