package codecrafter

import (
	"context"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// User is an account.
type User struct {
	ID           string
	Email        string // normalised: trimmed, lower case
	Name         string
	PasswordHash string // PHC-format argon2id hash
	CreatedAt    time.Time
}

// UserStore persists users.
type UserStore interface {
	// CreateUser stores u; CONFLICT when the email is taken.
	CreateUser(ctx context.Context, u *User) error
	// User returns the user with id; NOT_FOUND when there is none.
	User(ctx context.Context, id string) (*User, error)
	// UserByEmail looks up a normalised email; NOT_FOUND when there is none.
	UserByEmail(ctx context.Context, email string) (*User, error)
	// Users returns the users with these ids that exist, in any order.
	Users(ctx context.Context, ids []string) ([]*User, error)
}

// Limits on account fields.
const (
	MinPasswordLen = 10
	MaxPasswordLen = 1024
	MaxNameLen     = 100
	MaxEmailLen    = 254
)

// NormalizeEmail validates an email address and returns it trimmed and in
// lower case, or a BAD_USER_INPUT error that says why.
func NormalizeEmail(email string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(email))
	if e == "" {
		return "", Errorf(EINVALID, "email: must not be empty")
	}
	if len(e) > MaxEmailLen {
		return "", Errorf(EINVALID, "email: at most %d characters", MaxEmailLen)
	}
	addr, err := mail.ParseAddress(e)
	if err != nil || addr.Address != e || addr.Name != "" {
		return "", Errorf(EINVALID, "email: %q is not a valid address", email)
	}
	at := strings.LastIndexByte(e, '@')
	if domain := e[at+1:]; !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", Errorf(EINVALID, "email: %q has no valid domain", email)
	}
	return e, nil
}

// ValidatePassword checks a new password's length in characters.
func ValidatePassword(p string) error {
	n := utf8.RuneCountInString(p)
	if n < MinPasswordLen || n > MaxPasswordLen {
		return Errorf(EINVALID, "password: must be %d to %d characters, got %d", MinPasswordLen, MaxPasswordLen, n)
	}
	return nil
}

// NormalizeText trims a one-line text field (a name, a title) and checks
// it is 1 to maxLen characters with no control characters.
func NormalizeText(field, text string, maxLen int) (string, error) {
	t := strings.TrimSpace(text)
	switch {
	case t == "":
		return "", Errorf(EINVALID, "%s: must not be empty", field)
	case !utf8.ValidString(t) || strings.ContainsFunc(t, isControl):
		return "", Errorf(EINVALID, "%s: must be valid UTF-8 without control characters", field)
	case utf8.RuneCountInString(t) > maxLen:
		return "", Errorf(EINVALID, "%s: at most %d characters", field, maxLen)
	}
	return t, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
