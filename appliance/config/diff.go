package config

// Diff compares two configurations as set lines and returns a unified listing: unchanged lines are left out,
// lines only in a prefixed "- ", lines only in b prefixed "+ ", in configuration order. Secrets are shown as
// Placeholder, but compared by value: a changed secret is a line removed and a line added.
func Diff(a, b *Config) []string {
	x, y := a.Commands(), b.Commands()
	// Redacting changes values only, never which lines there are: the shown lines pair with the compared ones.
	shownX, shownY := Redact(a).Commands(), Redact(b).Commands()
	// Longest common subsequence over the two canonical listings; configurations are a few thousand lines at
	// most, so the quadratic table is fine.
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			i, j = i+1, j+1
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, "- "+shownX[i])
			i++
		default:
			out = append(out, "+ "+shownY[j])
			j++
		}
	}
	return out
}
