package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var staticFS embed.FS

// staticFiles serves the embedded static files at URLs that carry a hash of
// their content (/static/app.3f9c2a1b7d0e.css), so that browsers may cache
// them for ever and still never use a stale one.
type staticFiles struct {
	byURL  map[string]staticFile // "app.3f9c2a1b7d0e.css" → file
	byName map[string]string     // "app.css" → "/static/app.3f9c2a1b7d0e.css"
}

type staticFile struct {
	data        []byte
	contentType string
}

func loadStatic() (*staticFiles, error) {
	s := &staticFiles{byURL: map[string]staticFile{}, byName: map[string]string{}}
	err := fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		name := path.Base(p)
		ext := path.Ext(name)
		sum := sha256.Sum256(data)
		hashed := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:6]) + ext
		ct := mime.TypeByExtension(ext)
		if ct == "" {
			ct = "application/octet-stream"
		}
		s.byURL[hashed] = staticFile{data: data, contentType: ct}
		s.byName[name] = "/static/" + hashed
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("web: reading static files: %w", err)
	}
	return s, nil
}

// url returns the hashed URL of the static file name. An unknown name is a
// template error, found when the template first renders in the tests.
func (s *staticFiles) url(name string) (string, error) {
	u, ok := s.byName[name]
	if !ok {
		return "", fmt.Errorf("no static file %q", name)
	}
	return u, nil
}

func (s *staticFiles) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, ok := s.byURL[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(f.data)
}
