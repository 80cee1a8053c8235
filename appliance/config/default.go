package config

import _ "embed"

//go:embed default.json
var defaultJSON []byte

// Default returns the configuration a new appliance boots with: its host name, and eth0 addressed by DHCP.
func Default() *Config {
	c, err := Unmarshal(defaultJSON)
	if err != nil {
		panic("config: embedded default does not parse: " + err.Error()) // caught by TestDefaultIsValid
	}
	return c
}
