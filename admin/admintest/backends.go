package admintest

import "testing"

// Backends are the backends end-to-end tests run on.
func Backends() []Backend { return []Backend{Embedded()} }

// Main runs a test package's tests; use it from TestMain.
func Main(m *testing.M) int { return m.Run() }
