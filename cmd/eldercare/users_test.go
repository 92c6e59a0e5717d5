package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/eldercare-iot/eldercare/dashboard"
	"github.com/eldercare-iot/eldercare/internal/sqldb/sqldbtest"
)

// runCLI runs the eldercare command line with args and stdin.
func runCLI(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&out)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestUsersCLI(t *testing.T) {
	t.Parallel()
	sqldbtest.Dialects(t, func(t *testing.T, dsn string) {
		t.Parallel()
		out, err := runCLI(t, "", "users", "add", "--db", dsn, "--username", "admin", "--role", "admin")
		if err != nil {
			t.Fatalf("add admin: %v\n%s", err, out)
		}
		i := strings.Index(out, "password: ")
		if i < 0 {
			t.Fatalf("no generated password printed:\n%s", out)
		}
		adminPW := strings.Fields(out[i+len("password: "):])[0]

		if out, err := runCLI(t, "a caregiver password\n", "users", "add", "--db", dsn, "--username", "ana", "--role", "caregiver",
			"--name", "Ana 安娜", "--lang", "zh-CN", "--sites", "demo-station, site-2", "--password-stdin"); err != nil || strings.Contains(out, "password:") {
			t.Fatalf("add ana from stdin: %v\n%s", err, out)
		}
		bad := []struct {
			name, stdin string
			args        []string
			want        string
		}{
			{"duplicate", "", []string{"--username", "ana", "--role", "caregiver", "--sites", "x"}, "already exists"},
			{"bad role and lang", "", []string{"--username", "bob", "--role", "boss", "--lang", "fr"}, "role"},
			{"family without residents", "", []string{"--username", "fam", "--role", "family"}, "linked resident"},
			{"short stdin password", "short\n", []string{"--username", "bob", "--role", "admin", "--password-stdin"}, "at least 10"},
			{"empty stdin", "", []string{"--username", "bob", "--role", "admin", "--password-stdin"}, "read password"},
			{"admin with sites", "", []string{"--username", "bob", "--role", "admin", "--sites", "a"}, "every site"},
			{"no username", "", []string{"--role", "admin"}, "username: required"},
		}
		for _, tt := range bad {
			args := append([]string{"users", "add", "--db", dsn}, tt.args...)
			if _, err := runCLI(t, tt.stdin, args...); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%s: error %v, want one mentioning %q", tt.name, err, tt.want)
			}
		}

		out, err = runCLI(t, "", "users", "list", "--db", dsn)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range []string{"admin", "(all)", "ana", "Ana 安娜", "caregiver", "zh-CN", "demo-station,site-2"} {
			if !strings.Contains(out, w) {
				t.Errorf("list lacks %q:\n%s", w, out)
			}
		}
		if strings.Contains(out, "argon2") || strings.Contains(out, adminPW) {
			t.Errorf("list shows a secret:\n%s", out)
		}

		if out, err := runCLI(t, "another password!\n", "users", "passwd", "--db", dsn, "--username", "ana", "--password-stdin"); err != nil {
			t.Fatalf("passwd: %v\n%s", err, out)
		}
		if _, err := runCLI(t, "another password!\n", "users", "passwd", "--db", dsn, "--username", "nobody", "--password-stdin"); !errors.Is(err, dashboard.ErrUserNotFound) {
			t.Errorf("passwd of unknown user: %v", err)
		}

		db, acc, err := openAccounts(context.Background(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if u, err := acc.Authenticate(context.Background(), "admin", adminPW); err != nil || u.Role != dashboard.RoleAdmin {
			t.Errorf("admin login with the printed password: %+v %v", u, err)
		}
		if _, err := acc.Authenticate(context.Background(), "ana", "another password!"); err != nil {
			t.Errorf("ana login with the new password: %v", err)
		}
		if _, err := acc.Authenticate(context.Background(), "ana", "a caregiver password"); !errors.Is(err, dashboard.ErrBadLogin) {
			t.Errorf("ana's old password: %v", err)
		}
	})
}

func TestUpDemoAccounts(t *testing.T) {
	t.Parallel()
	dsn := sqldbtest.SQLiteDSN(t)
	db, acc, err := openAccounts(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	dir := t.TempDir()
	hint, err := upAccounts(context.Background(), acc, false, dir, dsn)
	if err != nil || !strings.Contains(hint, "users add") {
		t.Errorf("no accounts, no demo: hint %q, %v", hint, err)
	}
	if _, err := upAccounts(context.Background(), acc, true, dir, dsn); err != nil {
		t.Fatal(err)
	}
	file := dir + "/" + demoAccountsFile
	st, err := statMode(file)
	if err != nil || st != 0o600 {
		t.Fatalf("demo accounts file mode %o, %v", st, err)
	}
	lines := readLines(t, file)
	if len(lines) != len(demoAccounts) {
		t.Fatalf("demo accounts file has %d accounts: %v", len(lines), lines)
	}
	for _, l := range lines {
		f := strings.Split(l, "\t")
		u, err := acc.Authenticate(context.Background(), f[0], f[2])
		if err != nil || u.Role != f[1] {
			t.Errorf("demo account %s: %+v %v", f[0], u, err)
		}
		if u.Role == dashboard.RoleFamily && (len(u.Residents) != 1 || u.Residents[0] != "res-001") {
			t.Errorf("family account linked to %v, want res-001", u.Residents)
		}
	}
	// A second start creates nothing and keeps the file.
	if _, err := upAccounts(context.Background(), acc, true, dir, dsn); err != nil {
		t.Fatal(err)
	}
	if n, _ := acc.Count(context.Background()); n != len(demoAccounts) {
		t.Errorf("%d accounts after a second start", n)
	}
	if got := readLines(t, file); strings.Join(got, "\n") != strings.Join(lines, "\n") {
		t.Error("second start rewrote the demo accounts file")
	}
}

func statMode(path string) (uint32, error) {
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return uint32(st.Mode().Perm()), nil
}

// readLines returns the non-comment lines of path.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}
