# test: everything CI runs (installs Dovecot, Chromium, PostgreSQL if missing;
#       gofmt, vet, staticcheck; go test -race -shuffle=on).
# check: the static checks alone.
# fuzz: every fuzz target for FUZZTIME each.
# release: static binaries for every platform in dist/, with SHA256SUMS.
FUZZTIME ?= 30s

.PHONY: test check fuzz screenshots release

test:
	scripts/test

check:
	scripts/check

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz

# screenshots: rerun the browser tests, writing docs/screenshots/*.png.
screenshots:
	MAILTRIGGER_SCREENSHOTS=1 go test -count=1 -run TestBrowser ./internal/web/

# release: static binaries (no cgo) for RELEASE_PLATFORMS into dist/, named
# mailtrigger-VERSION-OS-ARCH[.exe], the version stamped into each (VERSION:
# the file VERSION if there is one, else git describe), and dist/SHA256SUMS.
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 darwin/arm64 windows/amd64
VERSION ?= $(shell cat VERSION 2>/dev/null || git describe --tags --always --dirty 2>/dev/null || echo dev)
RELEASE_LDFLAGS = -s -w -X mailtrigger/internal/cli.Version=$(VERSION)

release:
	rm -rf dist && mkdir -p dist
	set -e; for p in $(RELEASE_PLATFORMS); do \
		os=$${p%/*}; arch=$${p#*/}; ext=; [ "$$os" = windows ] && ext=.exe; \
		out=dist/mailtrigger-$(VERSION)-$$os-$$arch$$ext; \
		echo "building $$out"; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch go build -trimpath -ldflags "$(RELEASE_LDFLAGS)" -o $$out ./cmd/mailtrigger; \
	done
	cd dist && sha256sum mailtrigger-* > SHA256SUMS
	cat dist/SHA256SUMS
