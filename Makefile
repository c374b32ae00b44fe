# test: everything CI runs (installs Dovecot, Chromium, PostgreSQL if missing;
#       gofmt, vet, staticcheck; go test -race -shuffle=on).
# check: the static checks alone.
# fuzz: every fuzz target for FUZZTIME each.
FUZZTIME ?= 30s

.PHONY: test check fuzz screenshots

test:
	scripts/test

check:
	scripts/check

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz

# screenshots: rerun the browser tests, writing docs/screenshots/*.png.
screenshots:
	MAILTRIGGER_SCREENSHOTS=1 go test -count=1 -run TestBrowser ./internal/web/
