package vm

import (
	"fmt"
	"io"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks an initramfs from. It is not safe for concurrent
// use; its zero value is not usable (use newCPIO).
type cpioWriter struct {
	w     io.Writer
	off   int64
	inode uint32
	err   error
}

func newCPIO(w io.Writer) *cpioWriter { return &cpioWriter{w: w, inode: 1} }

// The file types of a cpio header's mode.
const (
	cpioDir     = 0o040000
	cpioFile    = 0o100000
	cpioSymlink = 0o120000
)

// entry writes one header, the name and data, each padded to four bytes.
func (c *cpioWriter) entry(name string, mode uint32, data []byte) error {
	if c.err != nil {
		return c.err
	}
	c.inode++
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.inode, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr))
	c.write(append([]byte(name), 0))
	c.pad()
	c.write(data)
	c.pad()
	return c.err
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.off += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.off % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// Dir, File and Symlink add one entry each; names are relative to the root ("bin/sh").
func (c *cpioWriter) Dir(name string) error { return c.entry(name, cpioDir|0o755, nil) }

func (c *cpioWriter) File(name string, perm uint32, data []byte) error {
	return c.entry(name, cpioFile|perm, data)
}

func (c *cpioWriter) Symlink(name, target string) error {
	return c.entry(name, cpioSymlink|0o777, []byte(target))
}

// Close writes the trailer that ends the archive.
func (c *cpioWriter) Close() error { return c.entry("TRAILER!!!", 0, nil) }
