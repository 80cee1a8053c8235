//go:build !linux

package probe

import "fmt"

func detect() (Capabilities, error) {
	return Capabilities{}, fmt.Errorf("%w: kernel probes need Linux", ErrProbe)
}
