// Package golden holds a test that pins what the service shows of recorded
// messages: for a corpus of awkward, malformed, over-cap and big messages,
// the API's message view, the raw download, every attachment download and
// the webhook bodies (with and without includeAttachments), compared byte
// for byte with files recorded from an earlier version of the code. Changes
// to how messages are stored (issue 15: each message stored once, decoded
// on read) must not change any of it. The package has no code of its own.
package golden
