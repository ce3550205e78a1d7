package tlsmgr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/caddyserver/certmagic"
)

// ErrNoAccount is returned by AccountURI when storage holds no account of
// email at the CA yet.
var ErrNoAccount = errors.New("no ACME account registered yet")

// AccountURI returns the URL of the ACME account certmagic registered for
// email at the CA with directory caURL, as stored in st (acme/ISSUER/users/
// EMAIL/*.json, certmagic v0.25.6's layout; "default" for no email): what
// an RFC 8657 CAA accounturi parameter must name. Safe for concurrent use.
func AccountURI(ctx context.Context, st certmagic.Storage, caURL, email string) (string, error) {
	if email == "" {
		email = "default"
	}
	key := (&certmagic.ACMEIssuer{CA: caURL}).IssuerKey()
	dir := path.Join("acme", certmagic.StorageKeys.Safe(key), "users", certmagic.StorageKeys.Safe(email))
	files, err := st.List(ctx, dir, false)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(files) == 0) {
		return "", fmt.Errorf("%s at %s: %w", email, caURL, ErrNoAccount)
	}
	if err != nil {
		return "", fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, f := range files {
		if !strings.HasSuffix(f, ".json") {
			continue
		}
		raw, err := st.Load(ctx, f)
		if err != nil {
			return "", fmt.Errorf("loading %s: %w", f, err)
		}
		var acct struct {
			Location string `json:"location"`
		}
		if err := json.Unmarshal(raw, &acct); err != nil {
			return "", fmt.Errorf("%s: %w", f, err)
		}
		if acct.Location != "" {
			return acct.Location, nil
		}
	}
	return "", fmt.Errorf("%s at %s: %w", email, caURL, ErrNoAccount)
}
