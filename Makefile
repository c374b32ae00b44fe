# test: everything CI runs (installs Dovecot, Chromium, PostgreSQL if missing;
#       gofmt, vet, staticcheck; go test -race -shuffle=on).
# check: the static checks alone.
# fuzz: every fuzz target for FUZZTIME each.
FUZZTIME ?= 30s

.PHONY: test check fuzz

test:
	scripts/test

check:
	scripts/check

fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz
