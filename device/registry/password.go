package registry

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Password hashes use Mosquitto's own format (mosquitto_passwd, Mosquitto
// 2.0, src/password_mosq.c): "$7$<iterations>$<base64 salt>$<base64 hash>",
// PBKDF2-HMAC-SHA512 with a 12-byte salt and a 64-byte key, standard base64
// with padding. mosquitto_passwd uses 101 iterations; HashPassword uses
// PasswordIterations. One hash thus serves the embedded broker and an
// exported Mosquitto password file, and no plaintext is ever stored.
const (
	PasswordIterations = 101
	passwordSaltLen    = 12
	passwordKeyLen     = 64
	maxIterations      = 10_000_000
)

// HashPassword returns the "$7$" hash of password with a random salt.
// An empty password is an error.
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("hash password: empty password")
	}
	salt := make([]byte, passwordSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return hashWith(password, salt, PasswordIterations)
}

func hashWith(password string, salt []byte, iter int) (string, error) {
	key, err := pbkdf2.Key(sha512.New, password, salt, iter, passwordKeyLen)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return "$7$" + strconv.Itoa(iter) + "$" + base64.StdEncoding.EncodeToString(salt) + "$" +
		base64.StdEncoding.EncodeToString(key), nil
}

type parsedHash struct {
	iter      int
	salt, key []byte
}

// ParsePasswordHash checks that hash is a well-formed "$7$" hash.
func ParsePasswordHash(hash string) error {
	_, err := parseHash(hash)
	return err
}

func parseHash(hash string) (parsedHash, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "7" {
		return parsedHash{}, errors.New(`password hash: want Mosquitto's "$7$<iterations>$<salt>$<hash>" (PBKDF2-SHA512, as mosquitto_passwd or "eldercare hash-password" write it)`)
	}
	iter, err := strconv.Atoi(parts[2])
	if err != nil || iter < 1 || iter > maxIterations {
		return parsedHash{}, fmt.Errorf("password hash: iterations %q must be 1 to %d", parts[2], maxIterations)
	}
	salt, err := base64.StdEncoding.DecodeString(parts[3])
	if err != nil || len(salt) == 0 {
		return parsedHash{}, errors.New("password hash: salt is not base64")
	}
	key, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(key) != passwordKeyLen {
		return parsedHash{}, fmt.Errorf("password hash: key is not %d bytes of base64", passwordKeyLen)
	}
	return parsedHash{iter, salt, key}, nil
}

// CheckPassword reports whether password matches hash, in constant time
// with respect to the key. A malformed hash never matches.
func CheckPassword(hash, password string) bool {
	p, err := parseHash(hash)
	if err != nil {
		return false
	}
	key, err := pbkdf2.Key(sha512.New, password, p.salt, p.iter, passwordKeyLen)
	if err != nil {
		return false
	}
	return hmac.Equal(key, p.key)
}
