package auth

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"github.com/surgecommerce/surge"
)

// Argon2id parameters: OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyBytes  = 32
	argonSaltBytes = 16

	// MaxConcurrentHashes bounds how many password hashes run at once, and so the memory a
	// login storm can take (MaxConcurrentHashes × 19 MiB).
	MaxConcurrentHashes = 8
)

// hasher hashes and checks passwords with argon2id, at most MaxConcurrentHashes at a time.
type hasher struct{ slots chan struct{} }

func newHasher() *hasher { return &hasher{slots: make(chan struct{}, MaxConcurrentHashes)} }

func (h *hasher) acquire(ctx context.Context) error {
	select {
	case h.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return surge.Errorf(surge.EUNAVAILABLE, "too many logins at once; try again")
	}
}

func (h *hasher) release() { <-h.slots }

// Hash returns the PHC string of a password.
func (h *hasher) Hash(ctx context.Context, password string) (string, error) {
	if err := h.acquire(ctx); err != nil {
		return "", err
	}
	defer h.release()
	salt := make([]byte, argonSaltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyBytes)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify reports whether password matches the PHC string, in constant time. Parameters are read
// from the string, so hashes made with older parameters still verify.
func (h *hasher) Verify(ctx context.Context, phc, password string) (bool, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, fmt.Errorf("unknown password hash format")
	}
	var version int
	var mem, iters uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("unknown argon2 version")
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &iters, &threads); err != nil {
		return false, fmt.Errorf("bad argon2 parameters: %w", err)
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("bad argon2 salt: %w", err)
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil {
		return false, fmt.Errorf("bad argon2 key: %w", err)
	}
	if err := h.acquire(ctx); err != nil {
		return false, err
	}
	defer h.release()
	got := argon2.IDKey([]byte(password), salt, iters, mem, threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// ValidatePassword checks a new password: valid UTF-8, MinPasswordRunes to MaxPasswordBytes.
func ValidatePassword(p string) error {
	switch {
	case len(p) > surge.MaxPasswordBytes:
		return surge.Errorf(surge.EINVALID, "password must be at most %d bytes", surge.MaxPasswordBytes)
	case !utf8.ValidString(p):
		return surge.Errorf(surge.EINVALID, "password is not valid UTF-8")
	case utf8.RuneCountInString(p) < surge.MinPasswordRunes:
		return surge.Errorf(surge.EINVALID, "password must be at least %d characters", surge.MinPasswordRunes)
	}
	return nil
}
