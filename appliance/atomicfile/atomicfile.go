// Package atomicfile writes the appliance's state files so that a crash or power cut at any moment leaves either
// the old file or the new one, never an empty or half-written one: write a temporary file in the same directory,
// fsync it, rename (or link) it into place, fsync the directory. Every file torided persists goes through it: the
// configuration and its archive, the sealing key, the certificate ledger, TOTP replay state, generated keys and
// the system files.
//
// Temporary files are named ".NAME.*.tmp"; RemoveTemps clears what a crash left behind.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TempSuffix ends the name of a file being written.
const TempSuffix = ".tmp"

// ErrExist is returned by Create when the file already exists.
var ErrExist = fs.ErrExist

// Write replaces path with data, mode perm, durably: after Write returns, a crash leaves the new file; a crash
// during Write leaves the old one (or none, if there was none).
func Write(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("atomicfile: %w", err)
	}
	return SyncDir(filepath.Dir(path))
}

// Create writes path with data like Write, but only if path does not exist yet: of two processes racing to
// create it, one wins and the other gets an error wrapping ErrExist (and should read the winner's file).
func Create(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	// link(2) never replaces: the file appears whole, or not at all.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("atomicfile: %s: %w", path, ErrExist)
		}
		return fmt.Errorf("atomicfile: %w", err)
	}
	if err := os.Remove(tmp); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	return SyncDir(filepath.Dir(path))
}

// writeTemp writes data to a new temporary file next to path, fsynced, and returns its name.
func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	dir, name := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+name+".*"+TempSuffix)
	if err != nil {
		return "", fmt.Errorf("atomicfile: %w", err)
	}
	tmp := f.Name()
	fail := func(err error) (string, error) {
		f.Close()
		os.Remove(tmp)
		return "", fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("atomicfile: %s: %w", path, err)
	}
	return tmp, nil
}

// Remove removes path if present and makes the removal durable.
func Remove(path string) error {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir makes the directory's entries (a rename, a new or removed file) durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("atomicfile: sync %s: %w", dir, err)
	}
	return nil
}

// RemoveTemps removes the temporary files a crash left in dir.
func RemoveTemps(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") && strings.HasSuffix(e.Name(), TempSuffix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}
