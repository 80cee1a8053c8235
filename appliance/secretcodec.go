package appliance

import (
	"strings"

	"toride/appliance/secrets"
	"toride/sslvpn/userauth"
)

// sealedSecrets is the store's SecretCodec: each secret leaf of the configuration is sealed with the appliance's
// key, bound to its path, so config.json and the archive never hold one in clear, and a sealed value copied to
// another place (another tunnel, another user) or another appliance does not open. Safe for concurrent use.
type sealedSecrets struct{ sealer *secrets.Sealer }

// sealContext binds a sealed configuration secret to its place.
func sealContext(path []string) string { return "config:" + strings.Join(path, " ") }

func (c sealedSecrets) Seal(path []string, value string) string {
	if secrets.IsSealed(value) {
		return value // one that did not open, kept as found
	}
	return c.sealer.Seal([]byte(value), sealContext(path))
}

func (c sealedSecrets) Open(path []string, stored string) (string, bool, error) {
	if !secrets.IsSealed(stored) {
		return stored, false, nil // written in clear by a version that did not seal the configuration
	}
	v, err := c.sealer.Open(stored, sealContext(path))
	if err == nil {
		return string(v), true, nil
	}
	// Before the whole configuration was sealed, OTP keys were sealed on their own, as raw bytes bound to
	// "otp:USER"; the value is now the key in base32.
	if len(path) == 3 && path[0] == "users" && path[2] == "otp-key" {
		if raw, oerr := c.sealer.Open(stored, "otp:"+path[1]); oerr == nil {
			return userauth.Base32(raw), false, nil
		}
	}
	return stored, true, err
}
