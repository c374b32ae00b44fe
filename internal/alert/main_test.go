package alert

import (
	"testing"

	"mailtrigger/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
