package vm

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// Initramfs is the root file system of a VM, built in memory and written as one cpio archive. Each path is added
// once (the first addition wins); the directories above a path are made as needed. It is not safe for concurrent
// use; its zero value is ready to use.
type Initramfs struct {
	entries map[string]entry
	err     error
}

type entry struct {
	src     string // a file on this machine to copy, or ""
	data    []byte
	perm    uint32
	symlink string
}

func (r *Initramfs) add(dst string, e entry) {
	dst = strings.TrimPrefix(path.Clean("/"+dst), "/")
	if r.entries == nil {
		r.entries = map[string]entry{}
	}
	if _, ok := r.entries[dst]; !ok {
		r.entries[dst] = e
	}
}

func (r *Initramfs) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// File adds the file at src (symbolic links followed) as dst, with src's permissions.
func (r *Initramfs) File(dst, src string) {
	st, err := os.Stat(src)
	if err != nil {
		r.fail(err)
		return
	}
	r.add(dst, entry{src: src, perm: uint32(st.Mode().Perm())})
}

// Data adds a file with the given content.
func (r *Initramfs) Data(dst string, perm uint32, data []byte) {
	r.add(dst, entry{data: data, perm: perm})
}

// Symlink adds a symbolic link.
func (r *Initramfs) Symlink(dst, target string) { r.add(dst, entry{symlink: target}) }

// Program adds an executable or shared library at its own path, with every shared library it loads (as ldd
// lists them, at the paths ldd gives).
func (r *Initramfs) Program(src string) {
	r.File(src, src)
	out, err := exec.Command("ldd", src).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") || strings.Contains(string(out), "statically linked") {
			return
		}
		r.fail(fmt.Errorf("ldd %s: %v: %s", src, err, out))
		return
	}
	for _, lib := range lddPaths(out) {
		r.File(lib, lib)
	}
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// lddPaths returns the libraries of ldd's output, the dynamic loader included.
func lddPaths(out []byte) []string {
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := lddLine.FindStringSubmatch(sc.Text()); m != nil {
			libs = append(libs, m[1])
		}
	}
	return libs
}

// Tree adds every regular file below src (symbolic links followed) under dst.
func (r *Initramfs) Tree(dst, src string) {
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		r.File(path.Join(dst, filepath.ToSlash(rel)), p)
		return nil
	})
	if err != nil {
		r.fail(err)
	}
}

// Modules adds the kernel modules below the given directories of root/lib/modules/RELEASE (relative paths such
// as "kernel/net") and the named modules ("veth"), each with the modules it depends on, and depmod's index files,
// so that modprobe and the kernel's own module requests work in the VM.
func (r *Initramfs) Modules(root, release string, dirs, names []string) {
	base := filepath.Join(root, "lib", "modules", release)
	depFile, err := os.ReadFile(filepath.Join(base, "modules.dep"))
	if err != nil {
		r.fail(fmt.Errorf("%v (tests/deps.sh test unpacks the kernel)", err))
		return
	}
	deps := map[string][]string{} // module path → the paths it needs
	byName := map[string]string{}
	for _, line := range strings.Split(string(depFile), "\n") {
		mod, needs, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(needs)
		byName[moduleName(mod)] = mod
	}
	var want []string
	for mod := range deps {
		for _, d := range dirs {
			if strings.HasPrefix(mod, d+"/") {
				want = append(want, mod)
			}
		}
	}
	for _, n := range names {
		mod, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			r.fail(fmt.Errorf("kernel %s has no module %s", release, n))
			return
		}
		want = append(want, mod)
	}
	seen := map[string]bool{}
	for len(want) > 0 {
		mod := want[len(want)-1]
		want = want[:len(want)-1]
		if seen[mod] {
			continue
		}
		seen[mod] = true
		want = append(want, deps[mod]...)
	}
	dst := path.Join("lib/modules", release)
	for _, mod := range slices.Sorted(maps.Keys(seen)) {
		r.File(path.Join(dst, mod), filepath.Join(base, mod))
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		r.fail(err)
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "modules.") {
			r.File(path.Join(dst, e.Name()), filepath.Join(base, e.Name()))
		}
	}
}

// moduleName is the name modprobe knows a module file by: "kernel/net/ipv4/esp4.ko" → "esp4", dashes as
// underscores.
func moduleName(p string) string {
	n := path.Base(p)
	n = n[:strings.Index(n+".ko", ".ko")]
	return strings.ReplaceAll(n, "-", "_")
}

// Write writes the archive to path, parents before children.
func (r *Initramfs) Write(dst string) error {
	if r.err != nil {
		return r.err
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	c := newCPIO(bw)
	dirs := map[string]bool{}
	var mkdirs func(string) error
	mkdirs = func(d string) error {
		if d == "." || d == "" || dirs[d] {
			return nil
		}
		if err := mkdirs(path.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		return c.Dir(d)
	}
	for _, name := range slices.Sorted(maps.Keys(r.entries)) {
		e := r.entries[name]
		if err := mkdirs(path.Dir(name)); err != nil {
			return err
		}
		switch {
		case e.symlink != "":
			err = c.Symlink(name, e.symlink)
		case e.src != "":
			data, rerr := os.ReadFile(e.src)
			if rerr != nil {
				return rerr
			}
			err = c.File(name, e.perm, data)
		default:
			err = c.File(name, e.perm, e.data)
		}
		if err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}
