package dashboard

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"path"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// distFS holds the front-end bundle that `make assets` (npm ci && npm run
// build in dashboard/web) writes to web/dist: app.js (our code with uPlot
// 1.6.32 from npm, bundled by esbuild 0.28.2), app.css and their source
// maps. A clean clone has only web/dist/.keep, so the package always
// compiles; the dashboard then says that the assets are missing and names
// AssetsCommand.
//
//go:embed all:web/dist
var distFS embed.FS

// AssetsCommand is the command, run from the repository root, that builds
// the front-end assets before `go build`.
const AssetsCommand = "make assets"

// AssetsPrefix is the URL path under which the bundle is served:
// AssetsPrefix+"app.js" and AssetsPrefix+"app.css".
const AssetsPrefix = "/assets/"

// requiredAssets are the files a built bundle has.
var requiredAssets = []string{"app.js", "app.css"}

// assetsDir returns the embedded bundle rooted at web/dist.
func assetsDir() fs.FS {
	sub, err := fs.Sub(distFS, "web/dist")
	if err != nil { // only for a malformed pattern, which the compiler rejects
		panic(err)
	}
	return sub
}

// AssetsBuilt reports whether the binary embeds the built front-end bundle.
// When it does not, the error names the missing files and AssetsCommand.
func AssetsBuilt() error { return checkAssets(assetsDir()) }

func checkAssets(fsys fs.FS) error {
	var missing []string
	for _, name := range requiredAssets {
		if st, err := fs.Stat(fsys, name); err != nil || st.Size() == 0 {
			missing = append(missing, "dashboard/web/dist/"+name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("dashboard assets are not built (missing %s): run `%s` in the repository root, then rebuild the binary",
			strings.Join(missing, ", "), AssetsCommand)
	}
	return nil
}

// assetsNotice is the notice the pages show when the bundle is missing (""
// when it is built); templates may print it through the "assetsNotice"
// function. It is plain text.
func assetsNotice() string {
	if err := AssetsBuilt(); err != nil {
		return err.Error()
	}
	return ""
}

// missingJS is served as app.js when the bundle is missing: it puts the
// notice at the top of every page (styled through the DOM, which the
// Content-Security-Policy allows, since app.css is missing too).
const missingJS = `(function(){var m=%s;var d=document.createElement('div');d.id='assets-missing';d.setAttribute('role','alert');d.textContent=m;` +
	`var s=d.style;s.background='#c62828';s.color='#fff';s.padding='1rem';s.font='16px system-ui,sans-serif';` +
	`function put(){document.body.insertBefore(d,document.body.firstChild);}` +
	`if(document.body){put();}else{document.addEventListener('DOMContentLoaded',put);}})();`

const missingCSS = "/* %s */\n"

const missingPage = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Dashboard assets not built</title></head>
<body><h1>Dashboard assets not built</h1><p>{{.}}</p></body></html>`

var missingTmpl = template.Must(template.New("missing").Parse(missingPage))

// assetHandler serves fsys (a built bundle) under AssetsPrefix: GET
// AssetsPrefix+name answers the file with its MIME type, a strong ETag
// (SHA-256 of the content) and Cache-Control no-cache (the browser
// revalidates; an unchanged file answers 304). An unknown name answers 404.
// When the bundle is not built, app.js answers a script that shows the
// notice, app.css a comment with it, and any other path, AssetsPrefix
// itself included, an HTML page with it (status 503).
func assetHandler(fsys fs.FS) fiber.Handler {
	type file struct {
		body  []byte
		ctype string
		etag  string
	}
	files := map[string]file{}
	builtErr := checkAssets(fsys)
	if builtErr == nil {
		_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || strings.HasPrefix(path.Base(p), ".") {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			if err != nil {
				return err
			}
			ct := mime.TypeByExtension(path.Ext(p))
			if strings.HasSuffix(p, ".map") {
				ct = "application/json"
			}
			if ct == "" {
				ct = "application/octet-stream"
			}
			sum := sha256.Sum256(b)
			files[p] = file{body: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
			return nil
		})
	}
	return func(c *fiber.Ctx) error {
		if c.Method() != fiber.MethodGet && c.Method() != fiber.MethodHead {
			return fiber.NewError(fiber.StatusMethodNotAllowed, "assets are read-only")
		}
		name := strings.TrimPrefix(c.Path(), strings.TrimSuffix(AssetsPrefix, "/"))
		name = strings.TrimPrefix(name, "/")
		if builtErr != nil {
			msg := builtErr.Error()
			switch name {
			case "app.js":
				q := jsString(msg)
				c.Set(fiber.HeaderContentType, "text/javascript; charset=utf-8")
				c.Set(fiber.HeaderCacheControl, "no-store")
				return c.SendString(fmt.Sprintf(missingJS, q))
			case "app.css":
				c.Set(fiber.HeaderContentType, "text/css; charset=utf-8")
				c.Set(fiber.HeaderCacheControl, "no-store")
				return c.SendString(fmt.Sprintf(missingCSS, strings.ReplaceAll(msg, "*/", "* /")))
			}
			var b strings.Builder
			if err := missingTmpl.Execute(&b, msg); err != nil {
				return fmt.Errorf("render assets notice: %w", err)
			}
			c.Status(fiber.StatusServiceUnavailable)
			c.Type("html", "utf-8")
			return c.SendString(b.String())
		}
		f, ok := files[name]
		if !ok {
			return fiber.NewError(fiber.StatusNotFound, fmt.Sprintf("no asset %q", truncate(name, 64)))
		}
		c.Set(fiber.HeaderETag, f.etag)
		c.Set(fiber.HeaderCacheControl, "no-cache")
		if c.Get(fiber.HeaderIfNoneMatch) == f.etag {
			return c.SendStatus(fiber.StatusNotModified)
		}
		c.Set(fiber.HeaderContentType, f.ctype)
		return c.Send(f.body)
	}
}

// Assets returns the handler of the embedded bundle; mount it with
// app.Get(AssetsPrefix+"*", s.Assets()) (see assetHandler for what it
// answers).
func (s *Server) Assets() fiber.Handler { return assetHandler(assetsDir()) }

// jsString quotes s as a JavaScript string literal (JSON is a subset) with
// "<" escaped so that it cannot end a script element.
func jsString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return strings.ReplaceAll(string(b), "<", `\u003c`)
}
