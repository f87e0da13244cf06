//go:build race

package proxy

// The race detector allocates on its own; allocation guards skip under it.
const raceEnabled = true
