package console

import (
	"fmt"
	"io"
	"strings"

	"github.com/boombuler/barcode/qr"
)

// quietZone is the blank margin around a QR code, in modules, that scanners need (ISO/IEC 18004 asks for 4).
const quietZone = 4

const (
	qrColours    = "\x1b[30;47m" // black foreground on a white background
	resetColours = "\x1b[0m"
)

// WriteQR draws text as a QR code with half blocks, two modules a character cell high, in black on white
// whatever the terminal's colours (authenticator apps do not all read an inverted code): a version-7 code with
// its margin is 53 columns wide.
func WriteQR(w io.Writer, text string) error {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return fmt.Errorf("drawing the QR code: %w", err)
	}
	n := code.Bounds().Dx()
	dark := func(x, y int) bool {
		x, y = x-quietZone, y-quietZone
		if x < 0 || y < 0 || x >= n || y >= n {
			return false
		}
		r, _, _, _ := code.At(x, y).RGBA()
		return r == 0
	}
	size := n + 2*quietZone
	var b strings.Builder
	for y := 0; y < size; y += 2 {
		b.WriteString(qrColours)
		for x := 0; x < size; x++ {
			top, bottom := dark(x, y), dark(x, y+1)
			switch {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteRune(' ')
			}
		}
		b.WriteString(resetColours + "\n")
	}
	_, err = io.WriteString(w, b.String())
	return err
}
