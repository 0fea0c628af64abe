package store

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// ErrBadPassword is returned by CheckPassword for a password that does not
// match its hash.
var ErrBadPassword = errors.New("store: wrong password")

// passwordCost is bcrypt's work factor; tests may lower it.
var passwordCost = bcrypt.DefaultCost

// HashPassword returns a bcrypt hash of password for Account.PasswordHash.
// Passwords longer than 72 bytes are refused (bcrypt would truncate them).
func HashPassword(password string) (string, error) {
	if password == "" {
		return "", errors.New("hash password: empty password")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(password), passwordCost)
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(h), nil
}

// CheckPassword returns nil if password matches hash, ErrBadPassword if it
// does not, and another error for a malformed hash.
func CheckPassword(hash, password string) error {
	err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return ErrBadPassword
	default:
		return fmt.Errorf("check password: %w", err)
	}
}
