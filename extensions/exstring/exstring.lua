-- exstring: Tair-style versioned strings (exString) and CAS/CAD on stock
-- Redis 7.0, as server-side Lua. The semantics and every reply byte follow
-- /work/shared/spec/exstring.md (the open-source TairString module).
--
-- This file is the body shared by the function library and the per-command
-- EVAL scripts (lua.go assembles both). It defines only locals and the table
-- H of handlers; H[name](keys, args) takes KEYS[1] = the key when the client
-- gave one (numkeys 0 otherwise) and args = the client's arguments after the
-- key, and returns the reply in exactly the shape the client expects.
--
-- Storage (layout 1, private): one hash per versioned string with exactly
-- the four fields below. Anything else under the key (a user hash, a hash
-- with extra fields, a bad version) is not an exString and answers
-- WRONGTYPE, so plain hash commands can never make us mis-read a key.
--
-- Exactness: Lua numbers are doubles, so versions and integer values never
-- pass through Lua arithmetic. They are kept as canonical decimal strings and
-- added/compared digit by digit. Float arithmetic is done by Redis itself
-- (HINCRBYFLOAT on a scratch field of the same key: 80-bit long double and
-- the module's %.17Lf formatting); the scratch field never outlives a call.

local F_MARK, F_VAL, F_VER, F_FLG, F_TMP = '_exs', 'val', 'ver', 'flg', '_tmp'
local LAYOUT = '1'

local E_SYNTAX = 'ERR syntax error'
local E_STALE = 'ERR update version is stale'
local E_NOINT = 'ERR value is not an integer'
local E_NOFLOAT = 'ERR value is not a float'
local E_OVERFLOW = 'ERR increment or decrement would overflow'
local E_MINMAX = 'ERR min or max is specified, but not valid'
local E_VERINT = 'ERR version should be integer'
local E_WRONGTYPE = 'WRONGTYPE Operation against a key holding the wrong kind of value'

local INT64_MAX = '9223372036854775807'
local INT64_MIN = '-9223372036854775808'
local UINT32_MAX = '4294967295'

local function err(msg) return {err = msg} end

-- Returned as an error reply, not raised: a raised error would carry
-- script details in its text, and the spec wants Redis's exact wording.
local function arity(name)
  return err("ERR wrong number of arguments for '" .. name .. "' command")
end

---------------------------------------------------------------------------
-- Exact signed 64-bit integers as canonical decimal strings.
---------------------------------------------------------------------------

-- Compares two digit strings without leading zeros byte by byte (Lua's <
-- on strings uses strcoll, and Redis sets LC_COLLATE from the environment).
local function cmp_mag(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for i = 1, #a do
    local x, y = a:byte(i), b:byte(i)
    if x ~= y then return x < y and -1 or 1 end
  end
  return 0
end

local function is_neg(s) return s:byte(1) == 45 end -- '-'

-- parse_int is Redis's strict string2ll: optional '-', no '+', no leading
-- zeros, no '-0', within int64. Returns s itself (already canonical) or nil.
local function parse_int(s)
  if s == '0' then return s end
  local sign, digits = string.match(s, '^(%-?)([1-9]%d*)$')
  if not digits or #digits > 19 then return nil end
  if #digits == 19 then
    local limit = sign == '-' and '9223372036854775808' or INT64_MAX
    if cmp_mag(digits, limit) > 0 then return nil end
  end
  return s
end

-- icmp orders two canonical int64 strings: -1, 0 or 1.
local function icmp(a, b)
  if a == b then return 0 end
  local an, bn = is_neg(a), is_neg(b)
  if an ~= bn then return an and -1 or 1 end
  if an then return -cmp_mag(a:sub(2), b:sub(2)) end
  return cmp_mag(a, b)
end

local function add_mag(a, b)
  local out, carry = {}, 0
  local i, j = #a, #b
  while i >= 1 or j >= 1 or carry > 0 do
    local d = carry
    if i >= 1 then d = d + a:byte(i) - 48 end
    if j >= 1 then d = d + b:byte(j) - 48 end
    if d >= 10 then d, carry = d - 10, 1 else carry = 0 end
    out[#out + 1] = string.char(48 + d)
    i, j = i - 1, j - 1
  end
  return string.reverse(table.concat(out))
end

-- sub_mag returns a - b for digit strings with a >= b.
local function sub_mag(a, b)
  local out, borrow = {}, 0
  local i, j = #a, #b
  while i >= 1 do
    local d = a:byte(i) - 48 - borrow
    if j >= 1 then d = d - (b:byte(j) - 48) end
    if d < 0 then d, borrow = d + 10, 1 else borrow = 0 end
    out[#out + 1] = string.char(48 + d)
    i, j = i - 1, j - 1
  end
  local s = string.gsub(string.reverse(table.concat(out)), '^0+', '')
  if s == '' then return '0' end
  return s
end

-- signed builds a canonical int64 string from a sign and a magnitude, or
-- nil when it does not fit.
local function signed(neg, mag)
  if mag == '0' then return '0' end
  local s = neg and ('-' .. mag) or mag
  if #mag > 19 then return nil end
  return parse_int(s)
end

-- iadd is exact int64 addition; nil on overflow (what HINCRBY refuses).
local function iadd(a, b)
  local an, bn = is_neg(a), is_neg(b)
  local am, bm = an and a:sub(2) or a, bn and b:sub(2) or b
  if an == bn then return signed(an, add_mag(am, bm)) end
  local c = cmp_mag(am, bm)
  if c == 0 then return '0' end
  if c > 0 then return signed(an, sub_mag(am, bm)) end
  return signed(bn, sub_mag(bm, am))
end

-- next_version increments like the module's uint64 counter: the version
-- after 9223372036854775807 is reported as -9223372036854775808.
local function next_version(v)
  if v == INT64_MAX then return INT64_MIN end
  return iadd(v, '1')
end

-- int_reply turns a canonical int64 string into an integer reply. Redis
-- converts a Lua number with (long long)double, exact only when the value
-- is a double; any other value (|v| > 2^53 and not a multiple of the
-- spacing there) is returned as a bulk string holding the exact digits
-- rather than as a wrong integer.
local function int_reply(s)
  local d = tonumber(s)
  if string.format('%.0f', d) == s then return d end
  return s
end

---------------------------------------------------------------------------
-- Long-double floats, evaluated by Redis on a scratch field of the key.
---------------------------------------------------------------------------

-- fl_add returns base + incr formatted by HINCRBYFLOAT, or nil and the
-- error text. The scratch field is always removed again: on a missing key
-- the HSET creates the key and the HDEL deletes it.
local function fl_add(key, base, incr)
  redis.call('HSET', key, F_TMP, base)
  local r = redis.pcall('HINCRBYFLOAT', key, F_TMP, incr)
  redis.call('HDEL', key, F_TMP)
  if type(r) == 'table' then return nil, r.err or '' end
  return r
end

-- classify applies the module's strtold rules: returns 'finite', 'inf' or
-- nil (not a float) and the string to hand to Redis. Redis's string2ld is
-- the module's parser except that it rejects "" (the module reads 0) and
-- anything after a NUL byte (the module's strtold stops there), so those
-- are normalised first; the module's length limit counts every byte.
local function classify(key, s)
  if #s >= 5120 then return nil end
  s = string.match(s, '^[^%z]*')
  if s == '' then return 'finite', '0' end
  local r, e = fl_add(key, '0', s)
  if r then return 'finite', s end
  if string.find(e, 'NaN or Infinity', 1, true) then return 'inf', s end
  return nil
end

---------------------------------------------------------------------------
-- Exact x86-64 long doubles (64-bit significand, exponent down to the
-- subnormal 2^-16445) for what Redis's 17-decimal result string cannot
-- tell: MIN/MAX comparisons (the module compares the unrounded sum, and
-- e.g. 0.6+0.1 > 0.7 there) and the sign of a result that prints as 0.
-- Numbers are parsed exactly as strtold does (correct rounding, ties to
-- even) with big naturals, so no double ever stands in for a long double.
---------------------------------------------------------------------------

-- Big naturals: little-endian arrays of base-10^7 limbs, zero is {}.
-- Limb products stay below 2^53, so double arithmetic on them is exact.
local BASE = 10000000

local function bn_norm(a)
  while #a > 0 and a[#a] == 0 do a[#a] = nil end
  return a
end

local function bn_small(n)
  local a = {}
  while n > 0 do
    local r = n % BASE
    a[#a + 1] = r
    n = (n - r) / BASE
  end
  return a
end

local function bn_decimal(s)
  local a, i = {}, #s
  while i >= 1 do
    local j = i - 6
    if j < 1 then j = 1 end
    a[#a + 1] = tonumber(s:sub(j, i))
    i = j - 1
  end
  return bn_norm(a)
end

-- bn_mul_small returns a*k for 0 < k <= 2^23.
local function bn_mul_small(a, k)
  local r, carry = {}, 0
  for i = 1, #a do
    local v = a[i] * k + carry
    local lo = v % BASE
    r[i] = lo
    carry = (v - lo) / BASE
  end
  while carry > 0 do
    local lo = carry % BASE
    r[#r + 1] = lo
    carry = (carry - lo) / BASE
  end
  return r
end

local function bn_add_small(a, k)
  local r = {}
  for i = 1, #a do r[i] = a[i] end
  local i = 1
  while k > 0 do
    local v = (r[i] or 0) + k
    local lo = v % BASE
    r[i] = lo
    k = (v - lo) / BASE
    i = i + 1
  end
  return r
end

local function bn_shl(a, k) -- a * 2^k
  while k >= 23 do
    a = bn_mul_small(a, 8388608)
    k = k - 23
  end
  if k > 0 then a = bn_mul_small(a, 2 ^ k) end
  return a
end

local function bn_pow10(a, e) -- a * 10^e
  while e >= 7 do
    a = bn_mul_small(a, BASE)
    e = e - 7
  end
  if e > 0 then a = bn_mul_small(a, 10 ^ e) end
  return a
end

local function bn_cmp(a, b)
  if #a ~= #b then return #a < #b and -1 or 1 end
  for i = #a, 1, -1 do
    if a[i] ~= b[i] then return a[i] < b[i] and -1 or 1 end
  end
  return 0
end

local function bn_add(a, b)
  local r, carry = {}, 0
  for i = 1, math.max(#a, #b) do
    local v = (a[i] or 0) + (b[i] or 0) + carry
    if v >= BASE then r[i], carry = v - BASE, 1 else r[i], carry = v, 0 end
  end
  if carry > 0 then r[#r + 1] = carry end
  return r
end

local function bn_sub(a, b) -- a - b for a >= b
  local r, borrow = {}, 0
  for i = 1, #a do
    local v = a[i] - (b[i] or 0) - borrow
    if v < 0 then r[i], borrow = v + BASE, 1 else r[i], borrow = v, 0 end
  end
  return bn_norm(r)
end

local function bn_ndigits(a)
  if #a == 0 then return 0 end
  return (#a - 1) * 7 + #string.format('%d', a[#a])
end

-- A long double is {neg, hi, lo, q}: (-1)^neg * (hi*2^32 + lo) * 2^q with
-- the significand in [2^63, 2^64) for normal numbers, q = LD_QMIN and a
-- smaller significand for subnormals, hi = lo = 0 for (signed) zero.
local LD_QMIN = -16445
local TWO32 = 4294967296

local function ld_zero(neg) return {neg = neg, hi = 0, lo = 0, q = 0} end

local function ld_is_zero(x) return x.hi == 0 and x.lo == 0 end

-- ld_round returns the long double nearest to P/Q * 2^e2 (P, Q > 0),
-- ties to even.
local function ld_round(P, Q, e2)
  local est = math.floor((bn_ndigits(P) - bn_ndigits(Q)) * 3.321928094887362)
  local k = 63 - est -- aim: 2^63 <= P*2^k/Q < 2^64
  if e2 - k < LD_QMIN then k = e2 - LD_QMIN end
  local T, U = P, Q
  if k >= 0 then T = bn_shl(P, k) else U = bn_shl(Q, -k) end
  local U63 = bn_shl(U, 63)
  while bn_cmp(T, U63) < 0 and e2 - (k + 1) >= LD_QMIN do
    T = bn_mul_small(T, 2)
    k = k + 1
  end
  while bn_cmp(T, bn_mul_small(U63, 2)) >= 0 do
    U = bn_mul_small(U, 2)
    U63 = bn_mul_small(U63, 2)
    k = k - 1
  end
  local q = e2 - k
  -- Long division: the quotient T/U is below 2^64.
  local Us = {U}
  for i = 1, 63 do Us[i + 1] = bn_mul_small(Us[i], 2) end
  local hi, lo, R = 0, 0, T
  for i = 63, 0, -1 do
    if bn_cmp(R, Us[i + 1]) >= 0 then
      R = bn_sub(R, Us[i + 1])
      if i >= 32 then hi = hi + 2 ^ (i - 32) else lo = lo + 2 ^ i end
    end
  end
  local c = bn_cmp(bn_mul_small(R, 2), U)
  if c > 0 or (c == 0 and lo % 2 == 1) then
    lo = lo + 1
    if lo == TWO32 then lo, hi = 0, hi + 1 end
    if hi == TWO32 then hi, q = TWO32 / 2, q + 1 end
  end
  return {neg = false, hi = hi, lo = lo, q = q}
end

local function ld_significand(x)
  return bn_add(bn_mul_small(bn_mul_small(bn_small(x.hi), 65536), 65536), bn_small(x.lo))
end

-- ld_parse reads a string that Redis's string2ld accepted as finite (or
-- ""), like strtold: decimal or hexadecimal, rounded to nearest.
local function ld_parse(s)
  s = string.match(s, '^[^%z]*') -- strtold stops at a NUL byte
  local neg = false
  local c = s:sub(1, 1)
  if c == '-' or c == '+' then
    neg = c == '-'
    s = s:sub(2)
  end
  s = string.lower(s)
  local P, e2, e10
  if s:sub(1, 2) == '0x' then
    local ip, fp, ex = string.match(s, '^0x(%x*)%.?(%x*)p?([+-]?%d*)$')
    if not ip then return nil end
    P = {}
    local digits = ip .. fp
    for i = 1, #digits do
      P = bn_add_small(bn_mul_small(P, 16), tonumber(digits:sub(i, i), 16))
    end
    P = bn_norm(P)
    e2, e10 = (tonumber(ex) or 0) - 4 * #fp, 0
  else
    local ip, fp, ex = string.match(s, '^(%d*)%.?(%d*)e?([+-]?%d*)$')
    if not ip then return nil end
    P = bn_decimal(ip .. fp)
    e2, e10 = 0, (tonumber(ex) or 0) - #fp
  end
  if #P == 0 then return ld_zero(neg) end
  local Q = {1}
  if e10 >= 0 then P = bn_pow10(P, e10) else Q = bn_pow10(Q, -e10) end
  local x = ld_round(P, Q, e2)
  x.neg = neg
  return x
end

-- ld_add is x + y rounded like the x87 (round to nearest; x + -x = +0).
local function ld_add(x, y)
  local xz, yz = ld_is_zero(x), ld_is_zero(y)
  if xz and yz then return ld_zero(x.neg and y.neg) end
  if xz then return y end
  if yz then return x end
  local q = math.min(x.q, y.q)
  local A, C = bn_shl(ld_significand(x), x.q - q), bn_shl(ld_significand(y), y.q - q)
  local S, neg
  if x.neg == y.neg then
    S, neg = bn_add(A, C), x.neg
  else
    local c = bn_cmp(A, C)
    if c == 0 then return ld_zero(false) end
    if c > 0 then S, neg = bn_sub(A, C), x.neg else S, neg = bn_sub(C, A), y.neg end
  end
  local r = ld_round(S, {1}, q)
  r.neg = neg
  return r
end

-- ld_cmp orders two long doubles (-0 == +0).
local function ld_cmp(x, y)
  local xs = ld_is_zero(x) and 0 or (x.neg and -1 or 1)
  local ys = ld_is_zero(y) and 0 or (y.neg and -1 or 1)
  if xs ~= ys then return xs < ys and -1 or 1 end
  if xs == 0 then return 0 end
  local c = 0
  if x.q ~= y.q then
    c = x.q < y.q and -1 or 1
  elseif x.hi ~= y.hi then
    c = x.hi < y.hi and -1 or 1
  elseif x.lo ~= y.lo then
    c = x.lo < y.lo and -1 or 1
  end
  return xs * c
end

-- fcmp orders two valid floats given with their kinds from classify.
local function fcmp(x, xk, y, yk)
  if xk == 'inf' or yk == 'inf' then
    local xs = xk == 'inf' and (is_neg(x) and -2 or 2) or 0
    local ys = yk == 'inf' and (is_neg(y) and -2 or 2) or 0
    if xs == ys then
      if xs ~= 0 then return 0 end
    else
      return xs < ys and -1 or 1
    end
  end
  return ld_cmp(ld_parse(x), ld_parse(y))
end

---------------------------------------------------------------------------
-- Keys.
---------------------------------------------------------------------------

local function valid_flags(f)
  return f and parse_int(f) and not is_neg(f) and icmp(f, UINT32_MAX) <= 0
end

-- load returns 'none', 'other' (any key that is not a well-formed
-- exString) or 'ex' and the object {val, ver, flg}.
local function load(key)
  local t = redis.call('TYPE', key).ok
  if t == 'none' then return 'none' end
  if t ~= 'hash' or redis.call('HLEN', key) ~= 4 then return 'other' end
  local r = redis.call('HMGET', key, F_MARK, F_VAL, F_VER, F_FLG)
  if r[1] ~= LAYOUT or not r[2] or not r[3] or not parse_int(r[3])
      or not valid_flags(r[4]) then
    return 'other'
  end
  return 'ex', {val = r[2], ver = r[3], flg = r[4]}
end

local function store(key, val, ver, flg)
  redis.call('HSET', key, F_MARK, LAYOUT, F_VAL, val, F_VER, ver, F_FLG, flg)
end

-- now_ms reads the server clock as a canonical millisecond string.
local function now_ms()
  local t = redis.call('TIME')
  return t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
end

-- expire_at turns a validated (positive) expire option into the absolute
-- unix time in ms for PEXPIREAT. Past absolute times become "now" (the
-- module's relative delay 0). Times whose arithmetic overflows int64 are
-- undefined in the module; we answer them with a syntax error (nil).
local function expire_at(kind, t)
  local ms = t
  if kind == 'ex' or kind == 'exat' then
    ms = signed(false, t .. '000')
    if not ms then return nil end
  end
  local now = now_ms()
  if kind == 'ex' or kind == 'px' then return iadd(now, ms) end
  if icmp(ms, now) < 0 then return now end
  return ms
end

-- apply_ttl is the TTL rule: expire option -> set; KEEPTTL -> kept; else
-- removed.
local function apply_ttl(key, o)
  if o.at then
    redis.call('PEXPIREAT', key, o.at)
  elseif not o.keepttl then
    redis.call('PERSIST', key)
  end
end

---------------------------------------------------------------------------
-- Option grammar (the module's parseAndGetExFlags).
---------------------------------------------------------------------------

local VALUE_OPTS = {ex = 'exp', exat = 'exp', px = 'exp', pxat = 'exp',
  ver = 'ver', abs = 'abs', flags = 'flags', def = 'def', min = 'min', max = 'max'}

-- parse_opts reads a[start..]; allowed is the set of option groups the
-- command takes. The whole line is parsed first, then the groups used are
-- checked against allowed. Returns the options or nil (syntax error).
local function parse_opts(a, start, allowed)
  local o, used = {}, {}
  local n = #a
  local j = start
  while j <= n do
    local t = string.lower(a[j])
    local g = VALUE_OPTS[t]
    if g and j < n then
      local v = a[j + 1]
      j = j + 1
      if g == 'exp' then
        if o.exp or o.keepttl then return nil end
        o.exp, o.expval = t, v
      elseif g == 'ver' or g == 'abs' then
        if o.verkind then return nil end
        o.verkind, o.verval = g, v
      else
        if o[g] then return nil end
        o[g] = v
      end
      used[#used + 1] = g
    elseif t == 'nx' then
      if o.xx then return nil end
      o.nx = true; used[#used + 1] = 'nx'
    elseif t == 'xx' then
      if o.nx then return nil end
      o.xx = true; used[#used + 1] = 'xx'
    elseif t == 'keepttl' then
      if o.exp then return nil end
      o.keepttl = true; used[#used + 1] = 'keepttl'
    elseif t == 'withversion' then
      o.withversion = true; used[#used + 1] = 'withversion'
    elseif t == 'nonegative' then
      o.nonegative = true; used[#used + 1] = 'nonegative'
    else
      return nil
    end
    j = j + 1
  end
  for i = 1, #used do
    if not allowed[used[i]] then return nil end
  end
  return o
end

-- Option groups each command accepts. Literal tables: the load-time
-- environment of a function library has no ipairs.
local ALLOW_EXSET = {nx = true, xx = true, exp = true, keepttl = true, ver = true,
  abs = true, flags = true, withversion = true}
local ALLOW_EXINCRBY = {nx = true, xx = true, exp = true, keepttl = true, ver = true,
  abs = true, withversion = true, def = true, min = true, max = true, nonegative = true}
local ALLOW_EXINCRBYFLOAT = {nx = true, xx = true, exp = true, keepttl = true,
  ver = true, abs = true, min = true, max = true}
local ALLOW_CAS = {exp = true, keepttl = true}
local ALLOW_APPEND = {nx = true, xx = true, ver = true, abs = true}
local ALLOW_EXGAE = {exp = true}

-- check_expire validates the expire value (integer > 0) and stores the
-- absolute time in o.at. Returns false for a syntax error.
local function check_expire(o)
  if not o.exp then return true end
  local t = parse_int(o.expval)
  if not t or is_neg(t) or t == '0' then return false end
  o.at = expire_at(o.exp, t)
  return o.at ~= nil
end

-- check_version validates VER/ABS (integer >= 0) into o.ver.
local function check_version(o)
  if not o.verkind then return true end
  local v = parse_int(o.verval)
  if not v or is_neg(v) then return false end
  o.ver = v
  return true
end

-- stale reports a failed VER check (VER 0 means no check).
local function stale(o, cur)
  return o.verkind == 'ver' and o.ver ~= '0' and o.ver ~= cur
end

local function new_version(o, cur)
  if o.verkind == 'abs' then return o.ver end
  return next_version(cur or '0')
end

-- argv rebuilds the module's argv numbering: a[1] = key, a[2..] = the
-- arguments after it; argc counts the command name too.
local function argv(keys, args)
  local a = {}
  for i = 1, #keys do a[#a + 1] = keys[i] end
  for i = 1, #args do a[#a + 1] = args[i] end
  return a, #a + 1
end

---------------------------------------------------------------------------
-- Commands.
---------------------------------------------------------------------------

local H = {}

-- EXSET key value [EX|EXAT|PX|PXAT t|KEEPTTL] [NX|XX] [VER|ABS v] [FLAGS f] [WITHVERSION]
H.exset = function(keys, args)
  local a, argc = argv(keys, args)
  if argc < 3 then return arity('exset') end
  local o = parse_opts(a, 3, ALLOW_EXSET)
  if not o then return err(E_SYNTAX) end
  if not check_expire(o) or not check_version(o) then return err(E_SYNTAX) end
  local flg
  if o.flags then
    flg = parse_int(o.flags)
    if not valid_flags(flg) then return err(E_SYNTAX) end
  end
  local key = a[1]
  local kind, obj = load(key)
  if kind == 'none' then
    if o.xx then return false end
  else
    if kind ~= 'ex' then return err(E_WRONGTYPE) end
    if o.nx then return false end
    if stale(o, obj.ver) then return err(E_STALE) end
  end
  local ver = new_version(o, obj and obj.ver)
  store(key, a[2], ver, flg or (obj and obj.flg) or '0')
  apply_ttl(key, o)
  if o.withversion then return int_reply(ver) end
  return {ok = 'OK'}
end

-- EXGET key [WITHFLAGS]
H.exget = function(keys, args)
  local a, argc = argv(keys, args)
  if argc < 2 or argc > 3 then return arity('exget') end
  if argc == 3 and string.lower(a[2]) ~= 'withflags' then return err(E_SYNTAX) end
  local kind, obj = load(a[1])
  if kind == 'other' then return err(E_WRONGTYPE) end
  if kind == 'none' then return false end
  if argc == 3 then return {obj.val, int_reply(obj.ver), int_reply(obj.flg)} end
  return {obj.val, int_reply(obj.ver)}
end

-- EXSETVER key version
H.exsetver = function(keys, args)
  local a, argc = argv(keys, args)
  if argc ~= 3 then return arity('exsetver') end
  local kind, obj = load(a[1])
  if kind == 'other' then return err(E_WRONGTYPE) end
  if kind == 'none' then return 0 end
  local v = parse_int(a[2])
  if not v or is_neg(v) or v == '0' then return err(E_SYNTAX) end
  redis.call('HSET', a[1], F_VER, v)
  return 1
end

-- EXINCRBY key num [DEF d] [EX..|KEEPTTL] [NX|XX] [VER|ABS v] [MIN m] [MAX m] [NONEGATIVE] [WITHVERSION]
H.exincrby = function(keys, args)
  local a, argc = argv(keys, args)
  if argc < 3 then return arity('exincrby') end
  local o = parse_opts(a, 3, ALLOW_EXINCRBY)
  if not o then return err(E_SYNTAX) end
  local key = a[1]
  local kind, obj = load(key)
  if kind == 'other' then return err(E_WRONGTYPE) end
  local num = parse_int(a[2])
  if not num then return err(E_NOINT) end
  local def = '0'
  if o.def then
    def = parse_int(o.def)
    if not def then return err(E_NOINT) end
  end
  if not check_expire(o) or not check_version(o) then return err(E_SYNTAX) end
  local min, max
  if o.min then
    min = parse_int(o.min)
    if not min then return err(E_MINMAX) end
  end
  if o.max then
    max = parse_int(o.max)
    if not max then return err(E_MINMAX) end
  end
  if min and max and icmp(max, min) < 0 then return err(E_MINMAX) end
  local base
  if kind == 'none' then
    if o.xx then return false end
    base = def
  else
    if o.nx then return false end
    base = parse_int(obj.val)
    if not base then return err(E_NOINT) end
    if stale(o, obj.ver) then return err(E_STALE) end
  end
  local r
  if kind == 'none' and o.def then
    r = def -- the module ignores num, MIN and MAX here (probed)
  else
    r = iadd(base, num)
    if not r or (max and icmp(r, max) > 0) or (min and icmp(r, min) < 0) then
      return err(E_OVERFLOW)
    end
  end
  if o.nonegative and is_neg(r) then r = '0' end
  local ver = new_version(o, obj and obj.ver)
  store(key, r, ver, (obj and obj.flg) or '0')
  apply_ttl(key, o)
  if o.withversion then return {int_reply(r), int_reply(ver)} end
  return int_reply(r)
end

-- EXINCRBYFLOAT key num [EX..|KEEPTTL] [NX|XX] [VER|ABS v] [MIN m] [MAX m]
H.exincrbyfloat = function(keys, args)
  local a, argc = argv(keys, args)
  if argc < 3 then return arity('exincrbyfloat') end
  local key = a[1]
  local kind, obj = load(key)
  if kind == 'other' then return err(E_WRONGTYPE) end
  local nk, num = classify(key, a[2])
  if not nk then return err(E_NOFLOAT) end
  local o = parse_opts(a, 3, ALLOW_EXINCRBYFLOAT)
  if not o then return err(E_SYNTAX) end
  if not check_expire(o) or not check_version(o) then return err(E_SYNTAX) end
  local mink, min, maxk, max
  if o.min then
    mink, min = classify(key, o.min)
    if not mink then return err(E_MINMAX) end
  end
  if o.max then
    maxk, max = classify(key, o.max)
    if not maxk then return err(E_MINMAX) end
  end
  if min and max and fcmp(max, maxk, min, mink) < 0 then return err(E_MINMAX) end
  local bk, base
  if kind == 'none' then
    if o.xx then return false end
    bk, base = 'finite', '0'
  else
    if o.nx then return false end
    bk, base = classify(key, obj.val)
    if not bk then return err(E_NOFLOAT) end
    if stale(o, obj.ver) then return err(E_STALE) end
  end
  -- Any infinity in the sum gives inf or NaN: both are overflow.
  if bk == 'inf' or nk == 'inf' then return err(E_OVERFLOW) end
  local r = fl_add(key, base, num)
  if not r then return err(E_OVERFLOW) end
  if r == '0' or min or max then
    -- Redis prints the sum with 17 decimals and turns "-0" into "0"; the
    -- module compares the exact sum with MIN/MAX and prints "-0" for a
    -- negative sum that rounds to zero.
    local exact = ld_add(ld_parse(base), ld_parse(num))
    if r == '0' and exact.neg then r = '-0' end
    if (max and maxk == 'finite' and ld_cmp(exact, ld_parse(max)) > 0)
        or (max and maxk == 'inf' and is_neg(max))
        or (min and mink == 'finite' and ld_cmp(exact, ld_parse(min)) < 0)
        or (min and mink == 'inf' and not is_neg(min)) then
      return err(E_OVERFLOW)
    end
  end
  local ver = new_version(o, obj and obj.ver)
  store(key, r, ver, (obj and obj.flg) or '0')
  apply_ttl(key, o)
  return r
end

-- EXCAS key newvalue version [EX..|KEEPTTL]
H.excas = function(keys, args)
  local a, argc = argv(keys, args)
  if argc < 4 then return arity('excas') end
  local o = parse_opts(a, 4, ALLOW_CAS)
  if not o then return err(E_SYNTAX) end
  if o.exp and not parse_int(o.expval) then return err(E_SYNTAX) end
  local v = parse_int(a[3])
  if not v then return err(E_VERINT) end
  if not check_expire(o) or is_neg(v) then return err(E_SYNTAX) end
  local key = a[1]
  local kind, obj = load(key)
  if kind == 'other' then return err(E_WRONGTYPE) end
  if kind == 'none' then return -1 end
  if obj.ver ~= v then
    return {{ok = 'CAS_FAILED'}, obj.val, int_reply(obj.ver)}
  end
  local ver = next_version(obj.ver)
  store(key, a[2], ver, obj.flg)
  apply_ttl(key, o)
  return {{ok = 'OK'}, {ok = ''}, int_reply(ver)}
end

-- EXCAD key version
H.excad = function(keys, args)
  local a, argc = argv(keys, args)
  if argc ~= 3 then return arity('excad') end
  local kind, obj = load(a[1])
  if kind == 'other' then return err(E_WRONGTYPE) end
  local v = parse_int(a[2])
  if not v then return err(E_SYNTAX) end
  if kind == 'none' then return -1 end
  if obj.ver ~= v then return 0 end
  redis.call('DEL', a[1])
  return 1
end

-- append is EXAPPEND (prepend false) and EXPREPEND (prepend true).
local function append(name, prepend, keys, args)
  local a, argc = argv(keys, args)
  if argc < 3 then return arity(name) end
  local o = parse_opts(a, 3, ALLOW_APPEND)
  if not o or not check_version(o) then return err(E_SYNTAX) end
  local key = a[1]
  local kind, obj = load(key)
  local val
  if kind == 'none' then
    if o.xx then return false end
    val = a[2]
  else
    -- The module answers NX before looking at the type (probed).
    if o.nx then return false end
    if kind ~= 'ex' then return err(E_WRONGTYPE) end
    if stale(o, obj.ver) then return err(E_STALE) end
    if prepend then val = a[2] .. obj.val else val = obj.val .. a[2] end
  end
  local ver = new_version(o, obj and obj.ver)
  store(key, val, ver, (obj and obj.flg) or '0')
  return int_reply(ver)
end

H.exappend = function(keys, args) return append('exappend', false, keys, args) end
H.exprepend = function(keys, args) return append('exprepend', true, keys, args) end

-- EXGAE key EX s|EXAT ts|PX ms|PXAT ts
H.exgae = function(keys, args)
  local a, argc = argv(keys, args)
  if argc < 4 then return arity('exgae') end
  local o = parse_opts(a, 2, ALLOW_EXGAE)
  if not o or not o.exp or not check_expire(o) then return err(E_SYNTAX) end
  local key = a[1]
  local kind, obj = load(key)
  if kind == 'other' then return err(E_WRONGTYPE) end
  if kind == 'none' then return false end
  redis.call('PEXPIREAT', key, o.at)
  return {obj.val, int_reply(obj.ver), int_reply(obj.flg)}
end

-- CAS key oldvalue newvalue [EX..|KEEPTTL]   (plain strings)
H.cas = function(keys, args)
  local a, argc = argv(keys, args)
  if argc < 4 then return arity('cas') end
  local o = parse_opts(a, 4, ALLOW_CAS)
  if not o or not check_expire(o) then return err(E_SYNTAX) end
  local key = a[1]
  local t = redis.call('TYPE', key).ok
  if t == 'none' then return -1 end
  if t ~= 'string' then return err(E_WRONGTYPE) end
  if redis.call('GET', key) ~= a[2] then return 0 end
  if o.keepttl then
    redis.call('SET', key, a[3], 'KEEPTTL')
  else
    redis.call('SET', key, a[3])
  end
  if o.at then redis.call('PEXPIREAT', key, o.at) end
  return 1
end

-- CAD key value   (plain strings)
H.cad = function(keys, args)
  local a, argc = argv(keys, args)
  if argc ~= 3 then return arity('cad') end
  local key = a[1]
  local t = redis.call('TYPE', key).ok
  if t == 'none' then return -1 end
  if t ~= 'string' then return err(E_WRONGTYPE) end
  if redis.call('GET', key) ~= a[2] then return 0 end
  redis.call('DEL', key)
  return 1
end

-- TYPE key: exstrtype for a versioned string, else the native type.
H.extype = function(keys, args)
  local a, argc = argv(keys, args)
  if argc ~= 2 then return arity('type') end
  local kind = load(a[1])
  if kind == 'ex' then return {ok = 'exstrtype'} end
  return redis.call('TYPE', a[1])
end
