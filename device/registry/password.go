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

	"golang.org/x/crypto/argon2"
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

// ParsePasswordHash checks that hash is a well-formed "$7$" hash or
// argon2id PHC string (HashPasswordArgon2id, mosquitto_passwd 2.1).
func ParsePasswordHash(hash string) error {
	if strings.HasPrefix(hash, "$argon2id$") {
		_, err := parseArgon2id(hash)
		return err
	}
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

// CheckPassword reports whether password matches hash (argon2id PHC or
// "$7$"), in constant time with respect to the key. A malformed hash never
// matches.
func CheckPassword(hash, password string) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		a, err := parseArgon2id(hash)
		if err != nil {
			return false
		}
		key := argon2.IDKey([]byte(password), a.salt, a.time, a.memoryKiB, a.threads, uint32(len(a.key)))
		return hmac.Equal(key, a.key)
	}
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

// Gateway passwords with argon2id (issue 11 item 8): 101 PBKDF2 iterations
// (Mosquitto 2.0's default) cost an attacker with a copy of the registry
// almost nothing. HashPasswordArgon2id writes the PHC string
// "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>" (base64
// without padding), the format of RFC 9106's reference implementation and
// of mosquitto_passwd 2.1 (-H argon2id, its default). The embedded broker
// accepts both formats, and rehashes a "$7$" credential with argon2id at
// its next successful CONNECT (NeedsRehash, broker.Auth.Rehash). A
// Mosquitto 2.0 dynamic-security export needs "$7$" hashes.
const (
	// MinGatewayPasswordLen is the shortest password HashPasswordArgon2id
	// accepts, in bytes (NIST SP 800-63B §5.1.1.2 asks at least 8 for
	// memorized secrets; a gateway's secret is generated, so 12).
	MinGatewayPasswordLen = 12
	// Argon2id cost of new gateway hashes: OWASP Password Storage Cheat
	// Sheet, argon2id "m=19456 (19 MiB), t=2, p=1"; a CONNECT costs one.
	GatewayArgonMemoryKiB = 19 * 1024
	GatewayArgonTime      = 2
	GatewayArgonThreads   = 1
	gatewayArgonKeyLen    = 32
	gatewayArgonSaltLen   = 16
)

// ErrShortPassword: a gateway password shorter than MinGatewayPasswordLen.
var ErrShortPassword = fmt.Errorf("password: at least %d characters", MinGatewayPasswordLen)

// HashPasswordArgon2id returns the argon2id PHC hash of password with a
// random salt. Errors: ErrShortPassword.
func HashPasswordArgon2id(password string) (string, error) {
	if len(password) < MinGatewayPasswordLen {
		return "", ErrShortPassword
	}
	salt := make([]byte, gatewayArgonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, GatewayArgonTime, GatewayArgonMemoryKiB, GatewayArgonThreads, gatewayArgonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, GatewayArgonMemoryKiB, GatewayArgonTime, GatewayArgonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// NeedsRehash reports whether hash is weaker than HashPasswordArgon2id
// writes: a "$7$" PBKDF2 hash or argon2id with less memory or passes.
func NeedsRehash(hash string) bool {
	a, err := parseArgon2id(hash)
	if err != nil {
		return true
	}
	return a.memoryKiB < GatewayArgonMemoryKiB || a.time < GatewayArgonTime
}

type argon2idHash struct {
	time, memoryKiB uint32
	threads         uint8
	salt, key       []byte
}

func parseArgon2id(hash string) (argon2idHash, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return argon2idHash{}, errors.New(`password hash: want "$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>"`)
	}
	var a argon2idHash
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &a.memoryKiB, &a.time, &a.threads); err != nil ||
		a.memoryKiB < 8 || a.memoryKiB > 4<<20 || a.time < 1 || a.time > 100 || a.threads < 1 {
		return argon2idHash{}, fmt.Errorf("password hash: bad argon2id parameters %q", parts[3])
	}
	var err error
	if a.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(a.salt) < 8 {
		return argon2idHash{}, errors.New("password hash: argon2id salt is not base64 of at least 8 bytes")
	}
	if a.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(a.key) < 16 {
		return argon2idHash{}, errors.New("password hash: argon2id key is not base64 of at least 16 bytes")
	}
	return a, nil
}
