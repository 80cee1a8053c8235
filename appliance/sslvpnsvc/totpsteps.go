package sslvpnsvc

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"toride/appliance/atomicfile"
)

// totpSteps is the file that keeps the newest accepted TOTP time step of each user across restarts, so a code
// accepted before a restart is refused after it (userauth.ReplayStore). It holds only the steps of the last
// minute or so, and is replaced whole, durably, before each login with a code is accepted.
type totpSteps struct {
	path string
	log  *slog.Logger
}

type totpStepsFile struct {
	Steps map[string]uint64 `json:"steps"`
}

// Load implements userauth.ReplayStore. No file is no step yet.
func (f *totpSteps) Load() (map[string]uint64, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	var doc totpStepsFile
	if err == nil {
		err = json.Unmarshal(b, &doc)
	}
	if err != nil {
		f.log.Error("the accepted TOTP steps cannot be read: every code of the current minute is refused as used", "path", f.path, "err", err)
		return nil, fmt.Errorf("TOTP steps %s: %w", f.path, err)
	}
	return doc.Steps, nil
}

// Save implements userauth.ReplayStore.
func (f *totpSteps) Save(steps map[string]uint64) error {
	b, err := json.Marshal(totpStepsFile{Steps: steps})
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(f.path), 0o700); err == nil {
			err = atomicfile.Write(f.path, b, 0o600)
		}
	}
	if err != nil {
		f.log.Error("the accepted TOTP step cannot be saved: the login is refused", "path", f.path, "err", err)
		return fmt.Errorf("TOTP steps %s: %w", f.path, err)
	}
	return nil
}
