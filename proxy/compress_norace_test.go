//go:build !race

package proxy

// raceEnabled: see compress_race_test.go.
const raceEnabled = false
