package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"toride/tests/lab"
)

// adminPassword is the image's script that keeps the admin's password on /config.
const adminPassword = "../rootfs/usr/lib/toride/admin-password"

// TestAdminPassword runs the image's admin-password over a directory standing for the appliance's / (etc/passwd,
// etc/shadow as the build leaves them, config/): the image's initial password, a seed, the saved one put back and
// a change saved.
func TestAdminPassword(t *testing.T) {
	if _, err := exec.LookPath("perl"); err != nil {
		t.Skip("needs perl, whose crypt checks the passwords")
	}
	const other = "root:*:19000:0:99999:7:::\n"

	t.Run("initial password, expired, kept without a seed or a saved one", func(t *testing.T) {
		root := newRoot(t)
		before := readFile(t, root, "etc/shadow")
		line := adminLine(t, root)
		if f := strings.Split(line, ":"); f[2] != "0" || !cryptMatches(t, "toride", f[1]) {
			t.Errorf("the image's line %q: want the password toride, last changed on day 0", line)
		}
		adminPasswordRun(t, root, "restore")
		if after := readFile(t, root, "etc/shadow"); after != before {
			t.Errorf("restore with nothing on /config changed etc/shadow:\n%s\nwant\n%s", after, before)
		}
		// Saving the image's own writes nothing either: it is what the next boot has anyway.
		adminPasswordRun(t, root, "save")
		if _, err := os.Stat(filepath.Join(root, "config/auth/admin.shadow")); !os.IsNotExist(err) {
			t.Errorf("the initial password was saved (%v)", err)
		}
	})

	t.Run("seed consumed and saved", func(t *testing.T) {
		lab.Require(t, "chpasswd") // chpasswd --root chroots
		root := newRoot(t)
		seed := filepath.Join(root, "config/seed/admin-password")
		writeFile(t, seed, "Sea shell: 7\r\nignored\n", 0o600)
		adminPasswordRun(t, root, "restore")
		if _, err := os.Stat(seed); !os.IsNotExist(err) {
			t.Errorf("the seed is still there (%v)", err)
		}
		line := adminLine(t, root)
		if f := strings.Split(line, ":"); f[2] == "0" || !cryptMatches(t, "Sea shell: 7", f[1]) {
			t.Errorf("after the seed, %q: want its password, not expired", line)
		}
		checkSaved(t, root, line)
		if got := readFile(t, root, "etc/shadow"); !strings.HasPrefix(got, other) {
			t.Errorf("etc/shadow lost the other lines:\n%s", got)
		}
	})

	t.Run("saved line restored", func(t *testing.T) {
		root := newRoot(t)
		saved := "admin:" + cryptOf(t, "Kept pass 1", "$y$j9T$abcdefghijklmnop") + ":20000:0:99999:7:::"
		writeFile(t, filepath.Join(root, "config/auth/admin.shadow"), saved+"\n", 0o600)
		adminPasswordRun(t, root, "restore")
		if got, want := readFile(t, root, "etc/shadow"), other+saved+"\n"; got != want {
			t.Errorf("etc/shadow:\n%s\nwant\n%s", got, want)
		}
		if fi, err := os.Stat(filepath.Join(root, "etc/shadow")); err != nil || fi.Mode().Perm() != 0o640 {
			t.Errorf("etc/shadow's mode: %v, %v; want 0640", fi.Mode(), err)
		}
	})

	t.Run("saved line that is not the admin's ignored", func(t *testing.T) {
		root := newRoot(t)
		before := readFile(t, root, "etc/shadow")
		writeFile(t, filepath.Join(root, "config/auth/admin.shadow"), "root::0:::::\n", 0o600)
		adminPasswordRun(t, root, "restore")
		if after := readFile(t, root, "etc/shadow"); after != before {
			t.Errorf("etc/shadow:\n%s\nwant\n%s", after, before)
		}
	})

	t.Run("save after a change", func(t *testing.T) {
		root := newRoot(t)
		// What pam_unix writes at the first login: a new password, changed today.
		changed := "admin:" + cryptOf(t, "Chosen 2", "$y$j9T$ponmlkjihgfedcba") + ":20100:0:99999:7:::"
		writeFile(t, filepath.Join(root, "etc/shadow"), other+changed+"\n", 0o640)
		adminPasswordRun(t, root, "save")
		checkSaved(t, root, changed)
		// And again, changed once more: the new one replaces the old.
		again := "admin:" + cryptOf(t, "Chosen 3", "$y$j9T$0123456789abcdef") + ":20101:0:99999:7:::"
		writeFile(t, filepath.Join(root, "etc/shadow"), other+again+"\n", 0o640)
		adminPasswordRun(t, root, "save")
		checkSaved(t, root, again)
	})
}

// newRoot makes a directory standing for the appliance's /, with the admin as images/build.sh leaves it.
func newRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n"+
		"admin:x:1000:990:Toride administrator:/config/home/admin:/usr/bin/toride\n", 0o644)
	writeFile(t, filepath.Join(root, "etc/shadow"), "root:*:19000:0:99999:7:::\nadmin:!*:19000::::::\n", 0o640)
	if err := os.Mkdir(filepath.Join(root, "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	adminPasswordRun(t, root, "initial")
	return root
}

// adminPasswordRun runs admin-password with root as its /.
func adminPasswordRun(t *testing.T, root string, args ...string) {
	t.Helper()
	cmd := exec.Command(adminPassword, args...)
	cmd.Env = append(os.Environ(), "TORIDE_ROOT="+root)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("admin-password %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// adminLine is the admin's line of root's etc/shadow.
func adminLine(t *testing.T, root string) string {
	t.Helper()
	for _, l := range strings.Split(readFile(t, root, "etc/shadow"), "\n") {
		if strings.HasPrefix(l, "admin:") {
			return l
		}
	}
	t.Fatal("etc/shadow has no line for admin")
	return ""
}

// checkSaved requires config/auth/admin.shadow to hold line, readable by root only.
func checkSaved(t *testing.T, root, line string) {
	t.Helper()
	if got := readFile(t, root, "config/auth/admin.shadow"); got != line+"\n" {
		t.Errorf("config/auth/admin.shadow: %q, want %q", got, line+"\n")
	}
	for f, want := range map[string]os.FileMode{"config/auth": 0o700, "config/auth/admin.shadow": 0o600} {
		if fi, err := os.Stat(filepath.Join(root, f)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", f, fi.Mode().Perm(), err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "config/auth/admin.shadow.new")); !os.IsNotExist(err) {
		t.Errorf("the temporary file is left behind (%v)", err)
	}
}

// cryptOf is crypt(3) of password with setting (a hash or a salt), through perl.
func cryptOf(t *testing.T, password, setting string) string {
	t.Helper()
	out, err := exec.Command("perl", "-e", "print crypt($ARGV[0], $ARGV[1])", password, setting).Output()
	if err != nil || !strings.HasPrefix(string(out), "$") {
		t.Fatalf("crypt(%q, %q): %q, %v", password, setting, out, err)
	}
	return string(out)
}

// cryptMatches says whether hash is that of password.
func cryptMatches(t *testing.T, password, hash string) bool {
	t.Helper()
	return strings.HasPrefix(hash, "$") && cryptOf(t, password, hash) == hash
}

func readFile(t *testing.T, root, name string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(root, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
