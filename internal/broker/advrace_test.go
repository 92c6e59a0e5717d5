//go:build race

package broker

// advRace: the tests run under the race detector.
const advRace = true
