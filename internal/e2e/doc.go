// Package e2e holds acceptance tests that run the real mailtrigger binary as
// a separate process against a private Dovecot: they kill it at random moments
// while it ingests, feed it messages above the size cap and broken ones, and
// then check the database and the API from the outside. The package has no
// code of its own; everything is in its tests.
package e2e
