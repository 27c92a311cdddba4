package http

import (
	"github.com/surgecommerce/surge"
	"github.com/surgecommerce/surge/auth"
)

// LoginRequest logs in with a password.
type LoginRequest struct {
	Login    string `json:"login"` // username or email
	Password string `json:"password"`
}

// OTPRequest asks for a one-time code.
type OTPRequest struct {
	Phone string `json:"phone"`
}

// OTPLoginRequest logs in with a one-time code.
type OTPLoginRequest struct {
	Phone string `json:"phone"`
	Code  string `json:"code"`
}

// RefreshRequest swaps a refresh token.
type RefreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

// LogoutRequest revokes a refresh token, or with Everywhere all of its user's.
type LogoutRequest struct {
	RefreshToken string `json:"refresh_token"`
	Everywhere   bool   `json:"everywhere"`
}

// OTPCode is the development endpoint's answer.
type OTPCode struct {
	Phone string `json:"phone"`
	Code  string `json:"code"`
}

// SPUList is a page of SPUs; pass the last id as ?after= for the next page.
type SPUList struct {
	Items []*surge.SPU `json:"items"`
}

// SKUList is a page of SKUs.
type SKUList struct {
	Items []*surge.SKU `json:"items"`
}

// SessionList is a list of sessions.
type SessionList struct {
	Items []*surge.Session `json:"items"`
}

// TestShoppersInput asks for synthetic shoppers.
type TestShoppersInput struct {
	Count int `json:"count"`
}

// TestShopperList is the synthetic shoppers provisioned.
type TestShopperList struct {
	Items []auth.TestShopper `json:"items"`
}
