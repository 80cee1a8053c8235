// Package secrets seals values that must be stored but never shown again (TOTP keys): AES-256-GCM under a key
// that lives only in the appliance's state directory (mode 0600), never in the configuration, its archive or the
// API. A sealed value in the configuration reads "sealed:v1:<base64>"; copying it to another appliance is useless
// without the key.
//
// The key file is the trust anchor: anyone with root on the box can read it. Sealing keeps secrets out of
// configuration exports, backups and screens, not away from root (a TPM would be the next step).
//
// A Sealer is safe for concurrent use.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"toride/appliance/atomicfile"
)

const prefix = "sealed:v1:"

// ErrNotSealed is a value that is not a sealed value; ErrOpen one this appliance's key cannot open.
var (
	ErrNotSealed = errors.New("secrets: not a sealed value")
	ErrOpen      = errors.New("secrets: cannot open the sealed value (sealed by another appliance or damaged)")
)

// Sealer seals and opens values.
type Sealer struct{ aead cipher.AEAD }

// Open loads the key file at path, creating it (32 random bytes, 0600) on first use.
func Open(path string) (*Sealer, error) {
	key, err := os.ReadFile(path)
	if err == nil && len(key) == 0 {
		// An empty key file is what a crash in the middle of creating one left (before every key was written
		// whole): nothing was ever sealed with it, so a new key replaces it.
		if err = os.Remove(path); err == nil {
			err = fs.ErrNotExist
		}
	}
	if errors.Is(err, fs.ErrNotExist) {
		key = make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		// Written whole or not at all (a crash must never leave an empty key), and never over a key another
		// start just made: of two starts racing, the loser reads the winner's key.
		if err := atomicfile.Create(path, key, 0o600); errors.Is(err, atomicfile.ErrExist) {
			if key, err = os.ReadFile(path); err != nil {
				return nil, fmt.Errorf("secrets: %w", err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("secrets: create key: %w", err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("secrets: key file %s holds %d bytes, not 32", path, len(key))
	}
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	return &Sealer{aead: aead}, nil
}

// Seal encrypts a value. context binds it to its place (e.g. "otp:alice"): a sealed value copied to another
// user's place does not open.
func (s *Sealer) Seal(value []byte, context string) string {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic("secrets: no randomness: " + err.Error())
	}
	out := s.aead.Seal(nonce, nonce, value, []byte(context))
	return prefix + base64.RawStdEncoding.EncodeToString(out)
}

// Open decrypts a sealed value for its context.
func (s *Sealer) Open(sealed, context string) ([]byte, error) {
	b64, ok := strings.CutPrefix(sealed, prefix)
	if !ok {
		return nil, ErrNotSealed
	}
	raw, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil || len(raw) < s.aead.NonceSize()+s.aead.Overhead() {
		return nil, ErrNotSealed
	}
	n := s.aead.NonceSize()
	out, err := s.aead.Open(nil, raw[:n], raw[n:], []byte(context))
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// IsSealed reports whether a value looks sealed.
func IsSealed(v string) bool { return strings.HasPrefix(v, prefix) }
