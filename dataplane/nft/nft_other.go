//go:build !linux

package nft

import "fmt"

func newBackend(string) (backend, error) {
	return nil, fmt.Errorf("%w: nftables needs Linux", ErrNFT)
}
