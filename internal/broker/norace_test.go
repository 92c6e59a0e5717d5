//go:build !race

package broker_test

// raceEnabled: the tests run under the race detector.
const raceEnabled = false
