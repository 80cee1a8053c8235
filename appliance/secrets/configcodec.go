package secrets

import (
	"strings"

	"toride/sslvpn/userauth"
)

// ConfigCodec is the configuration store's secret codec (store.Options.Secrets): each secret leaf of the
// configuration is sealed with the appliance's key, bound to its path, so config.json and the archive never hold
// one in clear, and a sealed value copied to another place (another tunnel, another user) or another appliance
// does not open. Safe for concurrent use.
type ConfigCodec struct{ Sealer *Sealer }

// sealContext binds a sealed configuration secret to its place.
func sealContext(path []string) string { return "config:" + strings.Join(path, " ") }

// Seal seals a secret value for its place.
func (c ConfigCodec) Seal(path []string, value string) string {
	if IsSealed(value) {
		return value // one that did not open, kept as found
	}
	return c.Sealer.Seal([]byte(value), sealContext(path))
}

// Open opens a stored value; current is false for a value stored the way of an older version (in clear, or
// sealed on its own), which the store then seals again.
func (c ConfigCodec) Open(path []string, stored string) (string, bool, error) {
	if !IsSealed(stored) {
		return stored, false, nil // written in clear by a version that did not seal the configuration
	}
	v, err := c.Sealer.Open(stored, sealContext(path))
	if err == nil {
		return string(v), true, nil
	}
	// Before the whole configuration was sealed, OTP keys were sealed on their own, as raw bytes bound to
	// "otp:USER"; the value is now the key in base32.
	if len(path) == 3 && path[0] == "users" && path[2] == "otp-key" {
		if raw, oerr := c.Sealer.Open(stored, "otp:"+path[1]); oerr == nil {
			return userauth.Base32(raw), false, nil
		}
	}
	return stored, true, err
}
