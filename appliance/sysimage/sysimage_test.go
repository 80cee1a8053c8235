package sysimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEnvFromGrubEditenv: a block grub-editenv wrote reads back, and one written here is byte for byte what
// grub-editenv writes for the same variables (it adds a comment line only).
func TestEnvFromGrubEditenv(t *testing.T) {
	raw, err := os.ReadFile("testdata/grubenv") // grub-editenv grubenv create; set slot=b trial=a version_a=v1.2-3-gabc
	if err != nil {
		t.Fatal(err)
	}
	env, err := ParseEnv(raw)
	if err != nil {
		t.Fatal(err)
	}
	if env["slot"] != "b" || env["trial"] != "a" || env["version_a"] != "v1.2-3-gabc" || len(env) != 3 {
		t.Fatalf("ParseEnv = %v", env)
	}
	out, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != envSize {
		t.Fatalf("Encode: %d bytes", len(out))
	}
	back, err := ParseEnv(out)
	if err != nil || len(back) != 3 || back["version_a"] != "v1.2-3-gabc" {
		t.Fatalf("round trip: %v %v", back, err)
	}
	if _, err := (Env{"slot": "a\nb"}).Encode(); err == nil {
		t.Error("a value with a newline was encoded")
	}
	if _, err := ParseEnv(raw[:100]); err == nil {
		t.Error("a short block was read")
	}
}

func FuzzParseEnv(f *testing.F) {
	raw, err := os.ReadFile("testdata/grubenv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		env, err := ParseEnv(b)
		if err != nil {
			return
		}
		if out, err := env.Encode(); err == nil {
			if again, err := ParseEnv(out); err != nil || len(again) != len(env) {
				t.Fatalf("%v re-encoded reads as %v, %v", env, again, err)
			}
		}
	})
}

// rig is a disk in files: two slot "devices", a grubenv, a kernel command line; mounting a slot shows a root
// holding the version written in the slot's first line.
type rig struct {
	dir string
	m   *Images
}

func newRig(t *testing.T, cmdline string) *rig {
	t.Helper()
	dir := t.TempDir()
	l := Layout{EnvFile: filepath.Join(dir, "grubenv"), Cmdline: filepath.Join(dir, "cmdline"),
		Slots:    map[string]string{"a": filepath.Join(dir, "slot-a"), "b": filepath.Join(dir, "slot-b")},
		MountDir: filepath.Join(dir, "mnt"), GoodFile: filepath.Join(dir, "good")}
	for _, s := range l.Slots {
		if err := os.WriteFile(s, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	env, _ := Env{"slot": "a", "version_a": "v1"}.Encode()
	must(t, os.WriteFile(l.EnvFile, env, 0o600))
	must(t, os.WriteFile(l.Cmdline, []byte(cmdline+"\n"), 0o600))
	m := New(l)
	m.mountRO = func(dev, dir string) (func() error, error) {
		b, err := os.ReadFile(dev)
		if err != nil {
			return nil, err
		}
		version, _, _ := strings.Cut(string(b), "\n")
		must(t, os.MkdirAll(filepath.Join(dir, "usr/lib/toride"), 0o755))
		must(t, os.MkdirAll(filepath.Join(dir, "boot"), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, VersionFile), []byte(version+"\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "boot/vmlinuz"), nil, 0o644))
		return func() error { return os.RemoveAll(dir) }, nil
	}
	return &rig{dir: dir, m: m}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// image writes a root image file holding version, and returns its path and SHA-256.
func (r *rig) image(t *testing.T, version string) (string, string) {
	body := []byte(version + "\n" + strings.Repeat("root ", 1000))
	p := filepath.Join(r.dir, version+".squashfs")
	must(t, os.WriteFile(p, body, 0o600))
	sum := sha256.Sum256(body)
	return p, hex.EncodeToString(sum[:])
}

func (r *rig) env(t *testing.T) Env {
	b, err := os.ReadFile(r.m.l.EnvFile)
	must(t, err)
	env, err := ParseEnv(b)
	must(t, err)
	return env
}

// TestInstallAndKeep: an image goes into the slot not running, checked, and is marked for one trial; the trial
// boot, once healthy, makes it the default; the slot it came from is untouched.
func TestInstallAndKeep(t *testing.T) {
	r := newRig(t, "root=PARTUUID=x ro toride.slot=a")
	slotA, _ := os.ReadFile(r.m.l.Slots["a"])
	p, sum := r.image(t, "v2")
	got, err := r.m.Install(context.Background(), p, sum)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "b" || got.Version != "v2" || !got.Trial {
		t.Fatalf("Install = %+v", got)
	}
	if env := r.env(t); env["slot"] != "a" || env["trial"] != "b" || env["version_b"] != "v2" {
		t.Fatalf("grubenv after the install: %v", env)
	}
	if b, _ := os.ReadFile(r.m.l.Slots["a"]); !bytes.Equal(b, slotA) {
		t.Fatal("the running slot was written")
	}
	st, err := r.m.Status()
	must(t, err)
	if !st.Appliance || st.Running != "a" || st.TrialBoot || !st.Slots[0].Default || !st.Slots[1].Trial || st.Slots[1].Version != "v2" {
		t.Fatalf("Status = %+v", st)
	}

	// GRUB boots slot b on trial (and clears trial in grubenv); torided comes up healthy and keeps it.
	env := r.env(t)
	delete(env, "trial")
	b, _ := env.Encode()
	must(t, os.WriteFile(r.m.l.EnvFile, b, 0o600))
	must(t, os.WriteFile(r.m.l.Cmdline, []byte("ro toride.slot=b toride.trial=1"), 0o600))
	if st, _ := r.m.Status(); !st.TrialBoot {
		t.Fatalf("a trial boot not kept yet: %+v", st)
	}
	if _, err := r.m.Install(context.Background(), p, sum); err == nil || !strings.Contains(err.Error(), "trial not kept yet") {
		t.Fatalf("an install during an unkept trial: %v", err)
	}
	kept, err := r.m.Keep()
	if err != nil || !kept {
		t.Fatalf("Keep = %v, %v", kept, err)
	}
	if env := r.env(t); env["slot"] != "b" || env["trial"] != "" {
		t.Fatalf("grubenv after Keep: %v", env)
	}
	if _, err := os.Stat(r.m.l.GoodFile); err != nil {
		t.Fatalf("Keep did not note the boot as kept: %v", err)
	}
	if kept, _ := r.m.Keep(); kept {
		t.Error("a second Keep kept again")
	}
}

// TestInstallRefusals: a wrong SHA-256 leaves the slot marked empty and never on trial; a missing one, an image
// larger than the slot and a development host are refused with what to do.
func TestInstallRefusals(t *testing.T) {
	r := newRig(t, "ro toride.slot=a")
	p, _ := r.image(t, "v2")
	_, err := r.m.Install(context.Background(), p, strings.Repeat("0", 64))
	if err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Fatalf("a wrong SHA-256: %v", err)
	}
	if env := r.env(t); env["trial"] != "" || env["version_b"] != "" || env["slot"] != "a" {
		t.Fatalf("grubenv after a refused image: %v", env)
	}
	if _, err := r.m.Install(context.Background(), p, ""); err == nil || !strings.Contains(err.Error(), "v2.squashfs.sha256 beside it") {
		t.Fatalf("no SHA-256: %v", err)
	}
	// The sum from the file beside the image, as sha256sum writes it.
	p, sum := r.image(t, "v3")
	must(t, os.WriteFile(p+".sha256", []byte(sum+"  v3.squashfs\n"), 0o600))
	if got, err := r.m.Install(context.Background(), p, ""); err != nil || got.Version != "v3" {
		t.Fatalf("with a .sha256 file: %+v %v", got, err)
	}
	big := filepath.Join(r.dir, "big")
	must(t, os.WriteFile(big, make([]byte, 2<<20), 0o600))
	sum2 := sha256.Sum256(make([]byte, 2<<20))
	if _, err := r.m.Install(context.Background(), big, hex.EncodeToString(sum2[:])); err == nil || !strings.Contains(err.Error(), "larger than a root slot") {
		t.Fatalf("an image larger than the slot: %v", err)
	}
	dev := newRig(t, "ro quiet")
	if _, err := dev.m.Install(context.Background(), p, sum); err != ErrNotAppliance {
		t.Fatalf("on a development host: %v", err)
	}
	if st, err := dev.m.Status(); err != nil || st.Appliance {
		t.Fatalf("Status on a development host: %+v %v", st, err)
	}
}
