package surge

// Money is an amount in integer minor units (cents, fen) of a currency. Never a float.
type Money struct {
	Amount   int64  `json:"amount"`
	Currency string `json:"currency"`
}

// Validate checks that the amount is within bounds and the currency is an ISO 4217 style code.
func (m Money) Validate(field string) error {
	if m.Amount < 0 {
		return Errorf(EINVALID, "%s must not be negative", field)
	}
	if m.Amount > MaxPriceMinor {
		return Errorf(EINVALID, "%s must be at most %d minor units", field, int64(MaxPriceMinor))
	}
	return ValidateCurrency(field+".currency", m.Currency)
}

// ValidateCurrency checks a three-letter upper-case currency code such as CNY or USD.
func ValidateCurrency(field, c string) error {
	if len(c) != 3 {
		return Errorf(EINVALID, "%s must be a three-letter code such as CNY", field)
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return Errorf(EINVALID, "%s must be a three-letter code such as CNY", field)
		}
	}
	return nil
}
