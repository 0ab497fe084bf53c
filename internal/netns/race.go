//go:build race

package netns

// raceEnabled: the tests run with -race, so the servers they start do too.
const raceEnabled = true
