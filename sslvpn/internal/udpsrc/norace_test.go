//go:build !race

package udpsrc_test

const raceEnabled = false
