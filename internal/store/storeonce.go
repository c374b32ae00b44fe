package store

// How a message is recorded: once (its raw bytes and layout) or with its
// decoded copies. Kept out of record.go's statements so that the columns
// they add stay a short list there.

import "encoding/json"

// stored is how a message's bodies, attachments and raw bytes are stored.
type stored struct {
	layout     string // mail.Layout's JSON; "" for none
	text, html string
	raw        []byte
}

// storedForm says how in is stored: once, as its raw bytes and its layout,
// when it has one (text, HTML and attachment content left empty, decoded
// on read); else with the decoded copies, as before. A message in a spool
// file (Big) is stored in chunks (writeChunks), its raw column empty.
func storedForm(in *Incoming) stored {
	m := in.Msg
	sf := stored{text: text(m.Text), html: text(m.HTML), raw: in.Raw}
	if in.Big != nil {
		sf.raw = []byte{}
	}
	if m.Layout != nil {
		l, err := json.Marshal(m.Layout)
		if err == nil {
			sf.layout, sf.text, sf.html = string(l), "", ""
		}
	}
	return sf
}

// content is what an attachment's content column holds.
func (sf stored) content(c []byte) []byte {
	if sf.layout != "" {
		return []byte{}
	}
	return nonNil(c)
}
