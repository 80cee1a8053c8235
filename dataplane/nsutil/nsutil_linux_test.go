package nsutil_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"toride/dataplane/nsutil"
	"toride/tests/lab"
)

// TestDoRunsInsideAndLeavesNothingBehind: fn runs in the namespace (its sockets stay there), never on the main
// thread, and afterwards no thread of the process is left inside.
func TestDoRunsInsideAndLeavesNothingBehind(t *testing.T) {
	l := lab.New(t)
	ns := l.Namespace("nsu")
	ns.AddAddr("lo", "10.222.0.1/32")
	own, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	// /run/netns entries are bind mounts of the namespace's file: the inode names the namespace.
	want := nsInode(t, "/run/netns/"+ns.Name)

	var sock int
	for i := range 50 {
		err := nsutil.Do("/run/netns/"+ns.Name, func() error {
			if got := nsInode(t, "/proc/thread-self/ns/net"); got != want {
				t.Errorf("fn ran in namespace %d, want %d", got, want)
			}
			if unix.Gettid() == unix.Getpid() {
				t.Error("fn ran on the main thread")
			}
			if i == 0 {
				var err error
				sock, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	defer unix.Close(sock)
	// The socket belongs to the namespace: it can bind the address only the namespace has.
	if err := unix.Bind(sock, &unix.SockaddrInet4{Addr: [4]byte{10, 222, 0, 1}}); err != nil {
		t.Fatalf("a socket opened inside cannot bind the namespace's address: %v", err)
	}

	tasks, _ := filepath.Glob("/proc/self/task/*/ns/net")
	for _, task := range tasks {
		if ns, err := os.Readlink(task); err == nil && ns != own {
			t.Errorf("thread %s is in %s, not in the process's own namespace %s", task, ns, own)
		}
	}
	if err := nsutil.Do("/run/netns/no-such-namespace", func() error { t.Error("fn ran without a namespace"); return nil }); err == nil {
		t.Fatal("Do into a missing namespace succeeded")
	}
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}
