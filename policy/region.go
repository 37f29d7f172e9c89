package policy

import "strings"

// Coarse regions returned by Region.
const (
	RegionEU    = "eu"    // EU member states and the EEA (IS, LI, NO)
	RegionNA    = "na"    // US, CA, MX
	RegionAPAC  = "apac"  // Asia and Oceania
	RegionLatAm = "latam" // South and Central America, the Caribbean
	RegionOther = "other" // everything else, unknown and empty codes
)

// Region maps an ISO 3166-1 alpha-2 code (any case) to a coarse region for
// Input.Data.Region, dashboards and metrics labels. It is a convenience,
// not a legal category: GB and CH are "other" because they are outside the
// EU/EEA, and the shipped policies decide on the jurisdiction itself, never
// on the region.
func Region(jurisdiction string) string {
	switch strings.ToUpper(strings.TrimSpace(jurisdiction)) {
	case "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR",
		"HR", "HU", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO",
		"SE", "SI", "SK",
		"IS", "LI", "NO":
		return RegionEU
	case "US", "CA", "MX":
		return RegionNA
	case "AU", "BD", "BN", "BT", "CN", "FJ", "HK", "ID", "IN", "JP", "KH", "KR",
		"LA", "LK", "MM", "MN", "MO", "MV", "MY", "NP", "NZ", "PG", "PH", "PK",
		"SG", "TH", "TL", "TW", "VN":
		return RegionAPAC
	case "AR", "BO", "BR", "CL", "CO", "CR", "CU", "DO", "EC", "GT", "HN", "HT",
		"JM", "NI", "PA", "PE", "PR", "PY", "SV", "TT", "UY", "VE":
		return RegionLatAm
	default:
		return RegionOther
	}
}
