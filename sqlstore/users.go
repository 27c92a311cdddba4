package sqlstore

import (
	"context"
	"database/sql"
	"time"

	"github.com/surgecommerce/surge"
)

const userColumns = `id, COALESCE(username, ''), COALESCE(email, ''), COALESCE(phone, ''), role, password_hash, created_at`

// CreateUser implements surge.UserStore.
func (s *Store) CreateUser(ctx context.Context, u *surge.User) error {
	_, err := s.exec(ctx, s.q(`INSERT INTO users (id, username, email, phone, role, password_hash, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`),
		u.ID, null(u.Username), null(u.Email), null(u.Phone), string(u.Role), u.PasswordHash, ms(u.CreatedAt))
	return s.wrap(err, "user")
}

// UserByID implements surge.UserStore.
func (s *Store) UserByID(ctx context.Context, id int64) (*surge.User, error) {
	return s.userWhere(ctx, `id = ?`, id)
}

// UserByLogin implements surge.UserStore. Usernames and emails are stored lower-cased.
func (s *Store) UserByLogin(ctx context.Context, login string) (*surge.User, error) {
	return s.userWhere(ctx, `username = ? OR email = ?`, login, login)
}

// UserByPhone implements surge.UserStore.
func (s *Store) UserByPhone(ctx context.Context, phone string) (*surge.User, error) {
	return s.userWhere(ctx, `phone = ?`, phone)
}

func (s *Store) userWhere(ctx context.Context, where string, args ...any) (*surge.User, error) {
	var u surge.User
	var role string
	var created int64
	err := s.db.QueryRowContext(ctx, s.q(`SELECT `+userColumns+` FROM users WHERE `+where), args...).
		Scan(&u.ID, &u.Username, &u.Email, &u.Phone, &role, &u.PasswordHash, &created)
	if err != nil {
		return nil, s.wrap(err, "user")
	}
	u.Role, u.CreatedAt = surge.Role(role), fromMs(created)
	return &u, nil
}

// SaveRefreshToken implements surge.UserStore.
func (s *Store) SaveRefreshToken(ctx context.Context, t surge.RefreshToken) error {
	_, err := s.exec(ctx, s.q(`INSERT INTO refresh_tokens (hash, user_id, expires_at) VALUES (?, ?, ?)`),
		t.Hash, t.UserID, ms(t.ExpiresAt))
	return s.wrap(err, "refresh token")
}

// TakeRefreshToken implements surge.UserStore. The delete is the claim: of two concurrent
// uses of one token only one deletes a row.
func (s *Store) TakeRefreshToken(ctx context.Context, hash string, now time.Time) (surge.RefreshToken, error) {
	t := surge.RefreshToken{Hash: hash}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var exp int64
		err := tx.QueryRowContext(ctx, s.q(`SELECT user_id, expires_at FROM refresh_tokens WHERE hash = ?`+s.dialect.ForUpdate), hash).
			Scan(&t.UserID, &exp)
		if err != nil {
			return err
		}
		t.ExpiresAt = fromMs(exp)
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM refresh_tokens WHERE hash = ?`), hash)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return sql.ErrNoRows
		}
		return nil
	})
	if err != nil {
		if surge.ErrorCode(s.wrap(err, "refresh token")) == surge.ENOTFOUND {
			return t, surge.Errorf(surge.EUNAUTHORIZED, "refresh token is not valid")
		}
		return t, s.wrap(err, "refresh token")
	}
	if !now.Before(t.ExpiresAt) {
		return t, surge.Errorf(surge.EUNAUTHORIZED, "refresh token expired")
	}
	return t, nil
}

// DeleteUserRefreshTokens implements surge.UserStore.
func (s *Store) DeleteUserRefreshTokens(ctx context.Context, userID int64) error {
	_, err := s.exec(ctx, s.q(`DELETE FROM refresh_tokens WHERE user_id = ?`), userID)
	return s.wrap(err, "refresh tokens")
}

// SaveOTP implements surge.UserStore.
func (s *Store) SaveOTP(ctx context.Context, o surge.OTP) error {
	_, err := s.exec(ctx, s.q(`INSERT INTO otps (phone, code_hash, expires_at, attempts) VALUES (?, ?, ?, 0)
		ON CONFLICT (phone) DO UPDATE SET code_hash = excluded.code_hash, expires_at = excluded.expires_at, attempts = 0`),
		o.Phone, o.CodeHash, ms(o.ExpiresAt))
	return s.wrap(err, "one-time code")
}

// ConsumeOTP implements surge.UserStore.
func (s *Store) ConsumeOTP(ctx context.Context, phone, codeHash string, now time.Time) error {
	var verdict error
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var hash string
		var exp int64
		var attempts int
		err := tx.QueryRowContext(ctx, s.q(`SELECT code_hash, expires_at, attempts FROM otps WHERE phone = ?`+s.dialect.ForUpdate), phone).
			Scan(&hash, &exp, &attempts)
		switch {
		case err == sql.ErrNoRows:
			verdict = surge.Errorf(surge.EUNAUTHORIZED, "no valid one-time code for this phone")
			return nil
		case err != nil:
			return err
		case attempts >= surge.MaxOTPAttempts:
			verdict = surge.Errorf(surge.ERATELIMIT, "too many wrong codes; request a new one")
			return nil
		case now.UnixMilli() >= exp:
			verdict = surge.Errorf(surge.EUNAUTHORIZED, "the one-time code expired")
			return nil
		case hash != codeHash:
			verdict = surge.Errorf(surge.EUNAUTHORIZED, "wrong one-time code")
			_, err = tx.ExecContext(ctx, s.q(`UPDATE otps SET attempts = attempts + 1 WHERE phone = ?`), phone)
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`DELETE FROM otps WHERE phone = ?`), phone)
		return err
	})
	if err != nil {
		return s.wrap(err, "one-time code")
	}
	return verdict
}
