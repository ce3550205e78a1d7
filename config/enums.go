package config

import "slices"

// Names accepted by the enumerated keys. They are the contract with the
// runtime packages: cmd/edge checks each list against what proxy, zap and
// challenge accept. Read them through the accessors below.
var (
	policies       = []string{"round_robin", "least_conn", "random", "ip_hash", "cookie", "first", "hash"}
	challengeTypes = []string{"http-01", "tls-alpn-01", "dns-01"}
	dnsProviders   = []string{"cloudflare", "rfc2136"}
	storageTypes   = []string{"file", "redis"}
	exportTypes    = []string{"pem_dir", "pfx_dir", "smb", "sftp", "exec", "azure_keyvault"}
	pfxEncryptions = []string{"modern", "legacy"}
	tsigAlgorithms = []string{"hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1"}
	logLevels      = []string{"debug", "info", "warn", "error"}
	logFormats     = []string{"json", "text"}
	// backendProtocols are pools[].protocol's values.
	backendProtocols = []string{"http", "h2c"}
)

// BackendProtocols returns the names pools[].protocol accepts (a new
// slice).
func BackendProtocols() []string { return slices.Clone(backendProtocols) }

// Policies returns the names pools[].policy accepts, in documentation
// order. Each call returns a new slice the caller may modify.
func Policies() []string { return slices.Clone(policies) }

// ChallengeTypes returns the names acme.challenges accepts (a new slice).
func ChallengeTypes() []string { return slices.Clone(challengeTypes) }

// DNSProviderTypes returns the names acme.dns[].provider accepts (a new
// slice).
func DNSProviderTypes() []string { return slices.Clone(dnsProviders) }

// StorageTypes returns the names storage.type accepts (a new slice).
func StorageTypes() []string { return slices.Clone(storageTypes) }

// ExportTypes returns the names exports[].type accepts (a new slice).
func ExportTypes() []string { return slices.Clone(exportTypes) }

// TSIGAlgorithms returns the names acme.dns[].key_alg accepts for
// rfc2136 (a new slice).
func TSIGAlgorithms() []string { return slices.Clone(tsigAlgorithms) }

// LogLevels returns the names log.level accepts (a new slice).
func LogLevels() []string { return slices.Clone(logLevels) }

// LogFormats returns the names log.format accepts: json and text (a new
// slice).
func LogFormats() []string { return slices.Clone(logFormats) }
