package alert_test

import (
	"testing"

	"mailtrigger/internal/testenv"
)

// The package's tests share testenv's PostgreSQL server.
func TestMain(m *testing.M) { testenv.Main(m) }
