// Package sysimage is the appliance's A/B system image: which root slot runs and what each slot holds, the
// installation of a new root into the other slot for one trial boot, and keeping it once it has proved healthy.
//
// The disk (images/build.sh): the EFI system partition with GRUB and its grubenv, root slots A and B (each a
// squashfs with its own kernel), and the config partition, which nothing here ever writes. GRUB boots grubenv's
// `slot`, or once its `trial`: it clears `trial` before booting it (images/grub.cfg), so a trial that does not
// prove healthy comes back to `slot` at the next boot by itself. Healthy means torided up with its configuration
// applied: torided then calls Keep, which makes the running slot the one to boot. A trial boot that is not kept
// before toride-trial.service's deadline is rebooted by it.
package sysimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// ErrNotAppliance is the answer where torided does not run from an appliance image (a development host, make run).
var ErrNotAppliance = errors.New("sysimage: this torided does not run from an appliance image (no toride.slot on the kernel command line)")

// The appliance's partitions, by the GPT partition UUIDs images/build.sh gives them.
const partUUIDs = "/dev/disk/by-partuuid/5d4e3a6f-000%d-4a5c-9e55-746f72696465"

// VersionFile is where a root holds its version (images/build.sh writes it).
const VersionFile = "usr/lib/toride/version"

// Layout says where the pieces are.
type Layout struct {
	EnvFile  string            // grubenv on the mounted EFI system partition
	Slots    map[string]string // slot name ("a", "b") → its partition's device
	Cmdline  string            // the kernel's command line: toride.slot=a|b, toride.trial=1 on a trial boot
	MountDir string            // where a slot just written is mounted, read-only, to read its version
	GoodFile string            // made once this boot is kept; toride-trial.service reboots a trial boot without it
}

// ApplianceLayout is the image's layout (rootfs/etc/fstab mounts the EFI system partition at /boot/efi).
func ApplianceLayout() Layout {
	return Layout{
		EnvFile:  "/boot/efi/EFI/toride/grubenv",
		Slots:    map[string]string{"a": fmt.Sprintf(partUUIDs, 2), "b": fmt.Sprintf(partUUIDs, 3)},
		Cmdline:  "/proc/cmdline",
		MountDir: "/run/toride/slot",
		GoodFile: "/run/toride-image-kept",
	}
}

// Images manages the slots. Safe for concurrent use: one installation at a time.
type Images struct {
	l  Layout
	mu sync.Mutex
	// mountRO mounts the squashfs on dev at dir read-only, and returns its unmount.
	mountRO func(dev, dir string) (func() error, error)
}

// New returns the Images of l.
func New(l Layout) *Images { return &Images{l: l, mountRO: mountSquashfs} }

// SlotStatus is one root slot.
type SlotStatus struct {
	Name    string `json:"name"`
	Version string `json:"version"` // "" when empty or being written
	Running bool   `json:"running"`
	Default bool   `json:"default"` // booted when no trial is pending
	Trial   bool   `json:"trial"`   // booted once, on trial, at the next boot
}

// Status is the answer of GET /api/v1/system/image.
type Status struct {
	Appliance bool   `json:"appliance"`
	Running   string `json:"running,omitempty"` // the slot this system booted from
	// TrialBoot says this boot is a trial that is not kept yet.
	TrialBoot bool         `json:"trial_boot"`
	Slots     []SlotStatus `json:"slots"`
}

// bootArgs reads the running slot and whether this is a trial boot from the kernel's command line.
func (m *Images) bootArgs() (slot string, trial bool) {
	b, err := os.ReadFile(m.l.Cmdline)
	if err != nil {
		return "", false
	}
	for _, f := range strings.Fields(string(b)) {
		switch {
		case strings.HasPrefix(f, "toride.slot="):
			slot = strings.TrimPrefix(f, "toride.slot=")
		case f == "toride.trial=1":
			trial = true
		}
	}
	if _, ok := m.l.Slots[slot]; !ok {
		return "", false
	}
	return slot, trial
}

func (m *Images) readEnv() (Env, error) {
	b, err := os.ReadFile(m.l.EnvFile)
	if err != nil {
		return nil, fmt.Errorf("sysimage: %w", err)
	}
	return ParseEnv(b)
}

// writeEnv rewrites the block in place (GRUB finds it by its sectors) and flushes it to the disk.
func (m *Images) writeEnv(env Env) error {
	b, err := env.Encode()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(m.l.EnvFile, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("sysimage: %w", err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		return fmt.Errorf("sysimage: write %s: %w", m.l.EnvFile, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sysimage: write %s: %w", m.l.EnvFile, err)
	}
	return f.Close()
}

// Status reads the slots.
func (m *Images) Status() (Status, error) {
	running, trial := m.bootArgs()
	if running == "" {
		return Status{Slots: []SlotStatus{}}, nil
	}
	env, err := m.readEnv()
	if err != nil {
		return Status{}, err
	}
	st := Status{Appliance: true, Running: running, TrialBoot: trial && env["slot"] != running}
	for _, name := range []string{"a", "b"} {
		st.Slots = append(st.Slots, SlotStatus{Name: name, Version: env["version_"+name], Running: name == running,
			Default: name == defaultSlot(env), Trial: env["trial"] == name})
	}
	return st, nil
}

func defaultSlot(env Env) string {
	if env["slot"] == "b" {
		return "b"
	}
	return "a"
}

// Install writes the root image at path into the slot that is not running, checks it against its SHA-256 (given,
// or from path.sha256 beside it, as sha256sum writes it), reads its version, and marks it to boot once on trial.
// Until it has been written and checked, the slot is marked empty: a power cut half-way never boots it.
func (m *Images) Install(ctx context.Context, path, sum string) (SlotStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	running, _ := m.bootArgs()
	if running == "" {
		return SlotStatus{}, ErrNotAppliance
	}
	target := "b"
	if running == "b" {
		target = "a"
	}
	want, err := expectedSum(path, sum)
	if err != nil {
		return SlotStatus{}, err
	}
	env, err := m.readEnv()
	if err != nil {
		return SlotStatus{}, err
	}
	if env["slot"] != running {
		return SlotStatus{}, fmt.Errorf("sysimage: this boot (slot %s) is a trial not kept yet: install once it is", running)
	}
	env["version_"+target] = ""
	if env["trial"] == target {
		delete(env, "trial")
	}
	if err := m.writeEnv(env); err != nil {
		return SlotStatus{}, err
	}
	if err := m.write(ctx, path, m.l.Slots[target], want); err != nil {
		return SlotStatus{}, err
	}
	version, err := m.version(m.l.Slots[target])
	if err != nil {
		return SlotStatus{}, err
	}
	env["version_"+target], env["trial"] = version, target
	if err := m.writeEnv(env); err != nil {
		return SlotStatus{}, err
	}
	return SlotStatus{Name: target, Version: version, Trial: true}, nil
}

// expectedSum is the SHA-256 given, or the one in path.sha256.
func expectedSum(path, sum string) (string, error) {
	if sum == "" {
		b, err := os.ReadFile(path + ".sha256")
		if err != nil {
			return "", fmt.Errorf("sysimage: no SHA-256 for %s: give it (sha256 HEX) or put %s.sha256 beside it", path, filepath.Base(path))
		}
		sum, _, _ = strings.Cut(strings.TrimSpace(string(b)), " ")
	}
	sum = strings.ToLower(strings.TrimSpace(sum))
	if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("sysimage: SHA-256 %q: want 64 hexadecimal digits (sha256sum's first field)", sum)
	}
	return sum, nil
}

// write copies the image onto dev, checking what it read against want, then reads back what it wrote.
func (m *Images) write(ctx context.Context, path, dev, want string) error {
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sysimage: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("sysimage: slot: %w", err)
	}
	defer dst.Close()
	room, err := dst.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("sysimage: slot %s: %w", dev, err)
	}
	if _, err := dst.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("sysimage: slot %s: %w", dev, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(dst, h), io.LimitReader(ctxReader{ctx, src}, room+1))
	if err != nil {
		return fmt.Errorf("sysimage: write %s to %s: %w", path, dev, err)
	}
	if n > room {
		return fmt.Errorf("sysimage: %s is larger than a root slot (%d MiB)", path, room>>20)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("sysimage: %s has SHA-256 %s, not %s: not installed", path, got, want)
	}
	if err := dst.Sync(); err != nil {
		return fmt.Errorf("sysimage: write %s: %w", dev, err)
	}
	back, err := os.Open(dev)
	if err != nil {
		return fmt.Errorf("sysimage: read back %s: %w", dev, err)
	}
	defer back.Close()
	h.Reset()
	if _, err := io.Copy(h, io.LimitReader(back, n)); err != nil {
		return fmt.Errorf("sysimage: read back %s: %w", dev, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("sysimage: the slot reads back with SHA-256 %s, not %s: the disk failed the write", got, want)
	}
	return nil
}

// version mounts the slot read-only and reads its version; a root without one, or without a kernel, is refused.
func (m *Images) version(dev string) (string, error) {
	if err := os.MkdirAll(m.l.MountDir, 0o700); err != nil {
		return "", fmt.Errorf("sysimage: %w", err)
	}
	unmount, err := m.mountRO(dev, m.l.MountDir)
	if err != nil {
		return "", fmt.Errorf("sysimage: the image is not a root file system (squashfs): %w", err)
	}
	defer unmount()
	b, err := os.ReadFile(filepath.Join(m.l.MountDir, VersionFile))
	if err != nil {
		return "", fmt.Errorf("sysimage: the image is not an appliance root (no /%s)", VersionFile)
	}
	if _, err := os.Stat(filepath.Join(m.l.MountDir, "boot/vmlinuz")); err != nil {
		return "", errors.New("sysimage: the image has no kernel (/boot/vmlinuz)")
	}
	return strings.TrimSpace(string(b)), nil
}

// Keep makes the running slot the one to boot, if this boot is a trial, and notes that this boot is kept. torided
// calls it once it is up with its configuration applied.
func (m *Images) Keep() (kept bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	running, trial := m.bootArgs()
	if running == "" {
		return false, nil
	}
	if trial {
		env, err := m.readEnv()
		if err != nil {
			return false, err
		}
		if env["slot"] != running {
			env["slot"] = running
			delete(env, "trial")
			if err := m.writeEnv(env); err != nil {
				return false, err
			}
			kept = true
		}
	}
	if err := os.WriteFile(m.l.GoodFile, nil, 0o644); err != nil {
		return kept, fmt.Errorf("sysimage: %w", err)
	}
	return kept, nil
}

// ctxReader stops a copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
