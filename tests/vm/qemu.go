package vm

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Machine is a VM booted from a kernel and an initramfs, with its serial console as its only device: no disk,
// no network card (the tests make their networks inside it, with namespaces and veth).
type Machine struct {
	Kernel    string // a bzImage (Debian's vmlinuz)
	Initramfs string // a cpio archive (see Initramfs)
	Cmdline   string // more kernel parameters, after console=ttyS0
	MemoryMiB int    // 0 means 2048
	CPUs      int    // 0 means 2
}

// Run boots the machine and waits until it powers off or ctx ends (then it is killed). Each line of the serial
// console goes to line, if not nil, as it comes; the whole console output is returned.
func (m Machine) Run(ctx context.Context, line func(string)) (string, error) {
	args := m.args(accel(m.Kernel))
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("vm: %w (tests/deps.sh test installs qemu-system-x86)", err)
	}
	var console strings.Builder
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := strings.TrimRight(sc.Text(), "\r")
		console.WriteString(l + "\n")
		if line != nil {
			line(l)
		}
	}
	err = cmd.Wait()
	if ctx.Err() != nil {
		return console.String(), fmt.Errorf("vm: still running when the time ran out: %w", ctx.Err())
	}
	if err != nil {
		return console.String(), fmt.Errorf("vm: qemu: %w", err)
	}
	return console.String(), nil
}

func (m Machine) args(accelArgs []string) []string {
	mem, cpus := m.MemoryMiB, m.CPUs
	if mem == 0 {
		mem = 2048
	}
	if cpus == 0 {
		cpus = 2
	}
	args := append(accelArgs, "-m", fmt.Sprint(mem), "-smp", fmt.Sprint(cpus),
		"-display", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none", "-no-reboot",
		"-kernel", m.Kernel,
		// panic=-1 with -no-reboot: a kernel panic ends qemu instead of hanging the test until its timeout.
		"-append", strings.TrimSpace("console=ttyS0 panic=-1 "+m.Cmdline))
	if m.Initramfs != "" {
		args = append(args, "-initrd", m.Initramfs)
	}
	return args
}

var (
	accelOnce sync.Once
	accelArgs []string
)

// accel returns qemu's accelerator arguments: KVM when it really runs a guest here, TCG otherwise. /dev/kvm may
// exist and still refuse to run an ordinary guest (nested set-ups that only run specially built ones), so the
// check boots kernel under KVM until it prints its first line.
func accel(kernel string) []string {
	accelOnce.Do(func() {
		accelArgs = []string{"-accel", "tcg", "-cpu", "max"}
		if f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0); err != nil {
			return
		} else {
			f.Close()
		}
		if kvmBoots(kernel) {
			accelArgs = []string{"-accel", "kvm", "-cpu", "host"}
		}
	})
	return accelArgs
}

func kvmBoots(kernel string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	m := Machine{Kernel: kernel, MemoryMiB: 256, CPUs: 1}
	booted := errors.New("booted")
	cctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	cmd := exec.CommandContext(cctx, "qemu-system-x86_64", m.args([]string{"-accel", "kvm", "-cpu", "host"})...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return false
	}
	cmd.Stderr = cmd.Stdout
	if cmd.Start() != nil {
		return false
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Linux version") {
			stop(booted)
			break
		}
	}
	_ = cmd.Wait()
	return errors.Is(context.Cause(cctx), booted)
}
