package redisstore

import "errors"

// Sentinel errors returned (wrapped) by Storage. Missing keys are reported
// with fs.ErrNotExist, as certmagic requires, not with a sentinel of ours.
var (
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("redisstore: storage closed")
	// ErrLockNotHeld is returned by Unlock and RenewLockLease when this
	// Storage does not hold the named lock, or held it but its lease was
	// lost (expired, or taken over by another holder).
	ErrLockNotHeld = errors.New("redisstore: lock not held")
	// ErrInvalidKey is returned for an empty key (after normalisation)
	// where a file key is required, and by Delete of the root.
	ErrInvalidKey = errors.New("redisstore: invalid key")
)
