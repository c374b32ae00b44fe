package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// ServicePackage is the command the bench measures: the product.
const ServicePackage = "mailtrigger/cmd/mailtrigger"

// BuildService builds ServicePackage with go build into dir and returns the
// binary's path. It must run inside the mailtrigger module (a checkout),
// where go resolves the package.
func BuildService(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "mailtrigger")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ServicePackage)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the service: go build %s: %v\n%s", ServicePackage, err, bytes.TrimSpace(out))
	}
	return bin, nil
}
