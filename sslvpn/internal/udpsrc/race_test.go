//go:build race

package udpsrc_test

// raceEnabled: the race detector's instrumentation allocates in x/net's batched writes (its raceRead of every
// message), so allocation counts hold only without it.
const raceEnabled = true
