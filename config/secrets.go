package config

import (
	"encoding/base64"
	"fmt"
	"reflect"
	"strings"
)

// placeholderSecrets are values that stand in for a secret in examples and
// templates, compared after lowercasing and dropping everything that is
// not a letter or a digit ("Change-Me", "change_me" and "changeme" are
// one). A config carrying one would run with a secret anyone can guess.
var placeholderSecrets = map[string]bool{
	"changeme": true, "changeit": true, "changethis": true, "changemenow": true,
	"replaceme": true, "replacethis": true, "fillmein": true, "setme": true,
	"secret": true, "secrets": true, "mysecret": true, "yoursecret": true, "supersecret": true, "topsecret": true,
	"password": true, "passw0rd": true, "mypassword": true, "yourpassword": true, "pass": true, "passwd": true,
	"token": true, "mytoken": true, "yourtoken": true, "apitoken": true, "yourapitoken": true,
	"key": true, "yourkey": true, "apikey": true, "yourapikey": true, "hmackey": true,
	"example": true, "exampletoken": true, "examplesecret": true, "examplepassword": true, "examplekey": true,
	"placeholder": true, "todo": true, "fixme": true, "tbd": true, "none": true, "null": true, "default": true,
	"admin": true, "root": true, "test": true, "letmein": true, "qwerty": true, "hunter2": true,
	"123456": true, "12345678": true, "1234567890": true,
	"redacted": true, // edge config's output pasted back
}

// placeholder reports whether s is a well-known stand-in for a secret and,
// if so, why: one of placeholderSecrets, one character repeated ("xxxx",
// "****", "0000"), a template such as "<your token>" or "{{ token }}", or
// the base64 form of one of those (an rfc2136 key is written in base64:
// "c2VjcmV0" is "secret").
func placeholder(s string) (string, bool) {
	if why, ok := plainPlaceholder(s); ok {
		return why, true
	}
	if b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s)); err == nil && len(b) > 0 {
		if why, ok := plainPlaceholder(string(b)); ok {
			return "the base64 of " + why, true
		}
	}
	return "", false
}

func plainPlaceholder(s string) (string, bool) {
	t := strings.TrimSpace(s)
	if t == "" {
		return "", false
	}
	if len(t) >= 3 && strings.Count(t, t[:1]) == len(t) {
		return fmt.Sprintf("%q, one character repeated", t), true
	}
	if (strings.HasPrefix(t, "<") && strings.HasSuffix(t, ">")) || (strings.HasPrefix(t, "{{") && strings.HasSuffix(t, "}}")) {
		return fmt.Sprintf("%q, a template left unfilled", t), true
	}
	var b strings.Builder
	for _, r := range strings.ToLower(t) {
		if ('a' <= r && r <= 'z') || ('0' <= r && r <= '9') {
			b.WriteRune(r)
		}
	}
	if placeholderSecrets[b.String()] {
		return fmt.Sprintf("%q, a well-known placeholder", t), true
	}
	return "", false
}

// placeholders refuses, at its position, every secret (each field X that
// has an X_file sibling: passwords, tokens, keys, the EAB HMAC key) whose
// value, inline, from ${ENV} or from X_file, is a placeholder. Empty
// secrets are left to the checks that require them (cluster.secret with
// peers, admin.token off loopback, an smb password...), which name the
// key too.
func (v *validator) placeholders() {
	v.secretsIn(reflect.ValueOf(*v.c), "")
}

func (v *validator) secretsIn(rv reflect.Value, path string) {
	switch rv.Kind() {
	case reflect.Pointer:
		if !rv.IsNil() {
			v.secretsIn(rv.Elem(), path)
		}
	case reflect.Struct:
		f := fieldsOf(rv.Type())
		for _, s := range f.secrets {
			val := rv.Field(s.val).String()
			why, ok := placeholder(val)
			if !ok {
				continue
			}
			from := ""
			if file := rv.Field(s.file).String(); file != "" {
				from = fmt.Sprintf(" (read from %s %s)", s.fileKey, file)
			}
			v.errorf(join(path, s.valKey), "%s is %s%s: set a real secret (such as the output of `openssl rand -hex 32`), through ${VAR} or %s",
				join(path, s.valKey), why, from, s.fileKey)
		}
		for _, name := range f.names {
			v.secretsIn(rv.Field(f.index[name]), join(path, name))
		}
	case reflect.Slice:
		for i := range rv.Len() {
			v.secretsIn(rv.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		for it := rv.MapRange(); it.Next(); {
			if it.Key().Kind() == reflect.String {
				v.secretsIn(it.Value(), path+"["+it.Key().String()+"]")
			}
		}
	}
}
