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
-- added/compared digit by digit. Floats (EXINCRBYFLOAT) are parsed, added
-- and compared as exact 80-bit long doubles in Lua (big-number arithmetic),
-- and the result is formatted by Redis itself (HINCRBYFLOAT on a scratch
-- field of the key, the module's %.17Lf formatting); the scratch field
-- never outlives a call, and a refused command writes nothing.
--
-- Where stock Redis cannot match the module (see lua.go for the list):
--  * integers beyond 2^53 that a double cannot hold come back as bulk
--    strings with the exact digits (FixBigInts turns them into integers);
--  * expire times whose arithmetic overflows int64 (undefined in the
--    module) answer ERR syntax error;
--  * a past EXAT/PXAT deletes the key at once, not a millisecond later;
--  * TYPE needs the extype handler; OBJECT ENCODING, MEMORY USAGE, hash
--    commands and keyspace events show the backing hash.

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

-- Status replies used on every success path, built once: Redis only reads
-- a returned table.
local R_OK, R_EMPTY, R_CAS_FAILED = {ok = 'OK'}, {ok = ''}, {ok = 'CAS_FAILED'}

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

-- SMALL is the length below which a canonical integer string (sign
-- included) is under 10^15: a double holds it, and the sum of two of them
-- (under 2^53), exactly, so the common cases skip the digit-string code.
local SMALL = 16

-- iadd is exact int64 addition; nil on overflow (what HINCRBY refuses).
local function iadd(a, b)
  if #a < SMALL and #b < SMALL then
    -- Never "-0": canonical inputs are never -0, and x + -x is +0.
    return string.format('%.0f', tonumber(a) + tonumber(b))
  end
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
  if #v < SMALL then return string.format('%.0f', tonumber(v) + 1) end
  if v == INT64_MAX then return INT64_MIN end
  return iadd(v, '1')
end

-- int_reply turns a canonical int64 string into an integer reply. Redis
-- converts a Lua number with (long long)double, exact only when the value
-- is a double; any other value (|v| > 2^53 and not a multiple of the
-- spacing there) is returned as a bulk string holding the exact digits
-- rather than as a wrong integer.
local function int_reply(s)
  if #s < SMALL then return tonumber(s) end
  local d = tonumber(s)
  if string.format('%.0f', d) == s then return d end
  return s
end

---------------------------------------------------------------------------
-- Exact x86-64 long doubles (64-bit significand, exponent down to the
-- subnormal 2^-16445) for what Redis's 17-decimal result string cannot
-- tell: MIN/MAX comparisons (the module compares the unrounded sum, and
-- e.g. 0.6+0.1 > 0.7 there) and the sign of a result that prints as 0.
-- Numbers are parsed exactly as strtold does (correct rounding, ties to
-- even) with big naturals, so no double ever stands in for a long double.
---------------------------------------------------------------------------

-- Big naturals: little-endian arrays of base-2^24 limbs, zero is {}.
-- Products of a limb and a factor up to 2^28 stay below 2^53, so double
-- arithmetic on them is exact, and shifts by whole limbs are moves.
local BASE = 16777216

local function bn_norm(a)
  while #a > 0 and a[#a] == 0 do a[#a] = nil end
  return a
end

local function bn_small(n) -- 0 <= n < 2^53
  local a = {}
  while n > 0 do
    local r = n % BASE
    a[#a + 1] = r
    n = (n - r) / BASE
  end
  return a
end

-- bn_mul_add returns a*k + c for 0 <= k, c <= 2^28.
local function bn_mul_add(a, k, c)
  local r, carry = {}, c
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
  return bn_norm(r)
end

local function bn_mul_small(a, k) return bn_mul_add(a, k, 0) end

local function bn_shl(a, k) -- a * 2^k
  local w = math.floor(k / 24)
  a = bn_mul_small(a, 2 ^ (k - 24 * w))
  if w == 0 or #a == 0 then return a end
  local r = {}
  for i = 1, w do r[i] = 0 end
  for i = 1, #a do r[w + i] = a[i] end
  return r
end

-- bn_digits reads a string of digits in base 10 or 16.
local function bn_digits(s, hex)
  local a, step, radix = {}, 7, 10
  if hex then step, radix = 6, 16 end
  local i = 1
  while i <= #s do
    local chunk = s:sub(i, i + step - 1)
    a = bn_mul_add(a, radix ^ #chunk, tonumber(chunk, radix))
    i = i + step
  end
  return a
end

local function bn_pow5(a, e) -- a * 5^e
  while e >= 11 do
    a = bn_mul_small(a, 48828125)
    e = e - 11
  end
  if e > 0 then a = bn_mul_small(a, 5 ^ e) end
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

-- bn_log2 approximates log2(a) for a > 0 from the leading limbs.
local function bn_log2(a)
  local n = #a
  local f = a[n]
  if n >= 2 then f = f * BASE + a[n - 1] end
  if n >= 3 then f = f * BASE + a[n - 2] end
  local shift = 0
  if n > 3 then shift = 24 * (n - 3) end
  return math.log(f) / math.log(2) + shift
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
  local k = 63 - math.floor(bn_log2(P) - bn_log2(Q)) -- aim: 2^63 <= P*2^k/Q < 2^64
  if e2 - k < LD_QMIN then k = e2 - LD_QMIN end
  local T, U = P, Q
  if k >= 0 then T = bn_shl(P, k) else U = bn_shl(Q, -k) end
  local U63 = bn_shl(U, 63)
  while bn_cmp(T, U63) < 0 and e2 - (k + 1) >= LD_QMIN do
    T = bn_mul_small(T, 2)
    k = k + 1
  end
  local U64 = bn_mul_small(U63, 2)
  while bn_cmp(T, U64) >= 0 do
    U = bn_mul_small(U, 2)
    U64 = bn_mul_small(U64, 2)
    k = k - 1
  end
  local q = e2 - k
  -- T/U < 2^64: long division in four base-2^16 digits, each estimated
  -- in doubles and corrected exactly.
  local R, dig = T, {}
  for i = 3, 0, -1 do
    local Ui = bn_shl(U, 16 * i)
    local d = 0
    if #R > 0 then
      d = math.floor(2 ^ (bn_log2(R) - bn_log2(Ui)))
      if d > 65535 then d = 65535 end
    end
    local prod = bn_mul_small(Ui, d)
    while bn_cmp(prod, R) > 0 do
      d = d - 1
      prod = bn_sub(prod, Ui)
    end
    R = bn_sub(R, prod)
    while bn_cmp(R, Ui) >= 0 do
      d = d + 1
      R = bn_sub(R, Ui)
    end
    dig[i] = d
  end
  local hi, lo = dig[3] * 65536 + dig[2], dig[1] * 65536 + dig[0]
  local c = bn_cmp(bn_mul_small(R, 2), U)
  if c > 0 or (c == 0 and lo % 2 == 1) then
    lo = lo + 1
    if lo == TWO32 then lo, hi = 0, hi + 1 end
    if hi == TWO32 then hi, q = TWO32 / 2, q + 1 end
  end
  return {neg = false, hi = hi, lo = lo, q = q}
end

local function ld_significand(x)
  return bn_add(bn_shl(bn_small(x.hi), 32), bn_small(x.lo))
end

-- LD_QMAX is the exponent of the largest finite long double,
-- (2^64-1) * 2^16320.
local LD_QMAX = 16320

-- ld_exact rounds a finite value from fparse to its long double (strtold
-- rounds to nearest, ties to even), once: the result is kept in v.
-- 10^e10 = 5^e10 * 2^e10 keeps the big numbers a third shorter.
local function ld_exact(v)
  if v.hi then return v end
  local P, Q = bn_digits(v.digits, v.hex), {1}
  if v.e10 >= 0 then P = bn_pow5(P, v.e10) else Q = bn_pow5(Q, -v.e10) end
  local x = ld_round(P, Q, v.e2 + v.e10)
  v.hi, v.lo, v.q = x.hi, x.lo, x.q
  return v
end

-- Magnitudes as log10, from the leading digits: accurate to about 1e-12,
-- which decides every comparison that is not a near tie (those go to the
-- exact long doubles).
local LOG10_2 = 0.30102999566398120
local LOG_OT = 16384 * LOG10_2  -- overflow: rounds to 2^16384 or more
local LOG_UT = -16446 * LOG10_2 -- underflow: at most half the smallest subnormal

-- flog10 is log10 of |v| for a nonzero finite value from fparse.
local function flog10(v)
  if v.l then return v.l end
  local d = v.digits
  if v.hex then
    local lead = d:sub(1, 13)
    v.l = math.log10(tonumber(lead, 16)) + (v.e2 + 4 * (#d - #lead)) * LOG10_2
  else
    local lead = d:sub(1, 17)
    v.l = math.log10(tonumber(lead)) + v.e10 + #d - #lead
  end
  return v.l
end

-- fparse is the float parser of the module (strtold on a copy of at most
-- 5119 bytes, so it stops at a NUL byte; leading whitespace, trailing
-- garbage, NaN, overflow to +-inf and underflow to 0 are rejected; "" is
-- 0), done in Lua so that a rejected number never costs a write. It
-- returns nil (not a float) or the value and the string that means the
-- same to Redis's HINCRBYFLOAT. The value is {neg, inf = true} for an
-- infinity; otherwise ld_exact turns it into a long double on demand: the
-- big-number work (slow for huge exponents) is done only where the
-- magnitudes (flog10) cannot decide.
local function fparse(s)
  if #s >= 5120 then return nil end
  s = string.match(s, '^[^%z]*')
  if s == '' then return ld_zero(false), '0' end
  local sign, body = string.match(string.lower(s), '^([+-]?)(.*)$')
  local neg = sign == '-'
  if body == 'inf' or body == 'infinity' then return {neg = neg, inf = true}, s end
  local v = {neg = neg, e2 = 0, e10 = 0}
  local m, ex = string.match(body, '^0x([%x%.]*)(.*)$')
  if m then
    if not string.find(m, '%x') or not string.match(m, '^%x*%.?%x*$')
        or (ex ~= '' and not string.match(ex, '^p[+-]?%d+$')) then
      return nil
    end
    local ip, fp = string.match(m, '^(%x*)%.?(%x*)$')
    local digits = string.gsub(ip .. fp, '^0+', '')
    if digits == '' then return ld_zero(neg), s end
    v.hex, v.digits = true, digits
    v.e2 = (tonumber(ex:sub(2)) or 0) - 4 * #fp
  else
    m, ex = string.match(body, '^([%d%.]*)(.*)$')
    if not string.find(m, '%d') or not string.match(m, '^%d*%.?%d*$')
        or (ex ~= '' and not string.match(ex, '^e[+-]?%d+$')) then
      return nil
    end
    local ip, fp = string.match(m, '^(%d*)%.?(%d*)$')
    local digits = string.gsub(ip .. fp, '^0+', '')
    if digits == '' then return ld_zero(neg), s end
    v.digits = digits
    v.e10 = (tonumber(ex:sub(2)) or 0) - #fp
  end
  -- Overflow to inf and underflow to 0 are decided from the magnitude;
  -- only a value within 1e-9 of a limit needs the exact rounding.
  local l = flog10(v)
  if l > LOG_OT + 1e-9 or l < LOG_UT - 1e-9 then return nil end
  if math.abs(l - LOG_OT) <= 1e-9 or math.abs(l - LOG_UT) <= 1e-9 then
    local x = ld_exact(v)
    if ld_is_zero(x) or x.q > LD_QMAX then return nil end
  end
  return v, s
end

-- ld_add is x + y rounded like the x87 (round to nearest; x + -x = +0).
local function ld_add(x, y)
  x, y = ld_exact(x), ld_exact(y)
  local xz, yz = ld_is_zero(x), ld_is_zero(y)
  if xz and yz then return ld_zero(x.neg and y.neg) end
  if xz then return y end
  if yz then return x end
  -- An operand below a quarter ulp of the other only decides the
  -- direction of rounding: any such stand-in gives the same result, and
  -- a small one keeps the big numbers short.
  if x.q - y.q > 130 then
    y = {neg = y.neg, hi = 0, lo = 1, q = x.q - 70}
  elseif y.q - x.q > 130 then
    x = {neg = x.neg, hi = 0, lo = 1, q = y.q - 70}
  end
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

-- fcmp orders two values from fparse, infinities included.
local function fcmp(x, y)
  local xi = x.inf and (x.neg and -1 or 1) or 0
  local yi = y.inf and (y.neg and -1 or 1) or 0
  if xi ~= 0 or yi ~= 0 then
    if xi == yi then return 0 end
    if xi ~= 0 and yi ~= 0 then return xi < yi and -1 or 1 end
    if xi ~= 0 then return xi end
    return -yi
  end
  return ld_cmp(ld_exact(x), ld_exact(y))
end

-- fsum_approx is the sign and magnitude of x + y for finite values: {neg,
-- l = log10|sum|}, {neg, zero = true} when both are zero, or nil when
-- they nearly cancel (within 1e-4), where only the exact sum can tell.
local function fsum_approx(x, y)
  local xz, yz = ld_is_zero(x), ld_is_zero(y)
  if xz and yz then return {neg = x.neg and y.neg, zero = true} end
  if xz then return {neg = y.neg, l = flog10(y)} end
  if yz then return {neg = x.neg, l = flog10(x)} end
  local big, lb, ls = x, flog10(x), flog10(y)
  if ls > lb then big, lb, ls = y, ls, lb end
  local r = 10 ^ (ls - lb)
  if x.neg == y.neg then return {neg = big.neg, l = lb + math.log10(1 + r)} end
  if 1 - r < 1e-4 then return nil end
  return {neg = big.neg, l = lb + math.log10(1 - r)}
end

-- fcmp_approx orders an approximate sum and a value from fparse, or
-- returns nil when they are too close to call (1e-7 in log10).
local function fcmp_approx(a, y)
  local ys
  if y.inf then return y.neg and 1 or -1 end
  if ld_is_zero(y) then ys = 0 else ys = y.neg and -1 or 1 end
  local as = a.zero and 0 or (a.neg and -1 or 1)
  if as ~= ys then return as < ys and -1 or 1 end
  if as == 0 then return 0 end
  local d = a.l - flog10(y)
  if math.abs(d) < 1e-7 then return nil end
  local c = d > 0 and 1 or -1
  return as * c
end

---------------------------------------------------------------------------
-- Keys.
---------------------------------------------------------------------------

local function valid_flags(f)
  return f == '0' or (f and parse_int(f) and not is_neg(f) and icmp(f, UINT32_MAX) <= 0)
end

-- is_wrongtype tells Redis's WRONGTYPE error from any other error reply.
local function is_wrongtype(r)
  return string.sub(r.err, 1, 10) == 'WRONGTYPE '
end

-- load returns 'none', 'other' (any key that is not a well-formed
-- exString) or 'ex' and the object {val, ver, flg}. HLEN, called with
-- pcall, answers three questions at once: 0 is a missing key (Redis
-- deletes empty hashes), WRONGTYPE any other type, and anything but 4
-- fields is not ours; only then does HMGET read the fields. Errors other
-- than WRONGTYPE (an ACL refusal) are raised, as redis.call would. (One
-- HRANDFIELD key 5 WITHVALUES could read it all in one command, but
-- costs Redis more: what a redis.call costs is mostly turning its reply
-- into Lua values, and it returns the field names too.)
local function load(key)
  local n = redis.pcall('HLEN', key)
  if type(n) == 'table' then
    if is_wrongtype(n) then return 'other' end
    return error(n)
  end
  if n == 0 then return 'none' end
  if n ~= 4 then return 'other' end
  local r = redis.call('HMGET', key, F_MARK, F_VAL, F_VER, F_FLG)
  if r[1] ~= LAYOUT or not r[2] or not r[3] or not parse_int(r[3]) or not valid_flags(r[4]) then
    return 'other'
  end
  return 'ex', {val = r[2], ver = r[3], flg = r[4]}
end

-- store writes a versioned string: every field when obj (what load read)
-- is nil, a new key; else only the fields that change, since the marker
-- and usually the flags are already there.
local function store(key, obj, val, ver, flg)
  if not obj then
    redis.call('HSET', key, F_MARK, LAYOUT, F_VAL, val, F_VER, ver, F_FLG, flg)
  elseif flg == obj.flg then
    redis.call('HSET', key, F_VAL, val, F_VER, ver)
  else
    redis.call('HSET', key, F_VAL, val, F_VER, ver, F_FLG, flg)
  end
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
-- removed. A key this call created (obj nil) has no TTL to remove.
local function apply_ttl(key, o, obj)
  if o.at then
    redis.call('PEXPIREAT', key, o.at)
  elseif not o.keepttl and obj then
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
  local n = #a
  if start > n then return {} end
  local o, used = {}, {}
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
  local a
  if #keys == 1 and #args <= 64 then
    -- One constructor sized at once (the usual case); unpack is bounded
    -- by Lua's stack, hence the loop for long argument lists.
    a = {keys[1], unpack(args)}
  else
    a = {}
    for i = 1, #keys do a[#a + 1] = keys[i] end
    for i = 1, #args do a[#a + 1] = args[i] end
  end
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
  store(key, obj, a[2], ver, flg or (obj and obj.flg) or '0')
  apply_ttl(key, o, obj)
  if o.withversion then return int_reply(ver) end
  return R_OK
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
  store(key, obj, r, ver, (obj and obj.flg) or '0')
  apply_ttl(key, o, obj)
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
  local nv, num = fparse(a[2])
  if not nv then return err(E_NOFLOAT) end
  local o = parse_opts(a, 3, ALLOW_EXINCRBYFLOAT)
  if not o then return err(E_SYNTAX) end
  if not check_expire(o) or not check_version(o) then return err(E_SYNTAX) end
  local minv, maxv
  if o.min then
    minv = fparse(o.min)
    if not minv then return err(E_MINMAX) end
  end
  if o.max then
    maxv = fparse(o.max)
    if not maxv then return err(E_MINMAX) end
  end
  if minv and maxv and fcmp(maxv, minv) < 0 then return err(E_MINMAX) end
  local bv, base
  if kind == 'none' then
    if o.xx then return false end
    bv, base = ld_zero(false), '0'
  else
    if o.nx then return false end
    bv, base = fparse(obj.val)
    if not bv then return err(E_NOFLOAT) end
    if stale(o, obj.ver) then return err(E_STALE) end
  end
  -- Any infinity in the sum gives inf or NaN: both are overflow. The
  -- bounds are compared with the exact long-double sum, as the module
  -- does; Redis's result string below has only 17 decimals.
  if bv.inf or nv.inf then return err(E_OVERFLOW) end
  -- The sum's magnitude decides overflow and the bounds unless it is a
  -- near tie; then the exact sum does (e.g. 0.6+0.1 > 0.7 in 80 bits).
  local sum = fsum_approx(bv, nv)
  local exact
  local function exact_sum()
    exact = exact or ld_add(bv, nv)
    return exact
  end
  if sum and sum.l and sum.l > LOG_OT - 1e-7
      and (sum.l > LOG_OT + 1e-7 or exact_sum().q > LD_QMAX) then
    return err(E_OVERFLOW)
  end
  local function beyond(bound, bad)
    if not bound then return false end
    local c = sum and fcmp_approx(sum, bound)
    if not c then c = fcmp(exact_sum(), bound) end
    return c == bad
  end
  if beyond(maxv, 1) or beyond(minv, -1) then return err(E_OVERFLOW) end
  -- Redis formats the sum as the module does (%.17Lf, trailing zeros
  -- cut), except that it turns "-0" into "0". The scratch field lives
  -- only during this call; on a new key it is the first field written.
  redis.call('HSET', key, F_TMP, base)
  local r = redis.pcall('HINCRBYFLOAT', key, F_TMP, num)
  if type(r) ~= 'string' then
    -- Unreachable: overflow was ruled out above.
    redis.call('HDEL', key, F_TMP)
    return err(E_OVERFLOW)
  end
  if r == '0' then
    local neg
    if sum then neg = sum.neg else neg = exact_sum().neg end
    if neg then r = '-0' end
  end
  local ver = new_version(o, obj and obj.ver)
  store(key, obj, r, ver, (obj and obj.flg) or '0')
  redis.call('HDEL', key, F_TMP)
  apply_ttl(key, o, obj)
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
    return {R_CAS_FAILED, obj.val, int_reply(obj.ver)}
  end
  local ver = next_version(obj.ver)
  store(key, obj, a[2], ver, obj.flg)
  apply_ttl(key, o, obj)
  return {R_OK, R_EMPTY, int_reply(ver)}
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
  store(key, obj, val, ver, (obj and obj.flg) or '0')
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

-- get_string reads a plain string: its value, false when the key is
-- missing, nil when it holds another type (one GET instead of TYPE + GET).
local function get_string(key)
  local r = redis.pcall('GET', key)
  if type(r) == 'table' then
    if is_wrongtype(r) then return nil end
    return error(r)
  end
  return r
end

-- CAS key oldvalue newvalue [EX..|KEEPTTL]   (plain strings)
H.cas = function(keys, args)
  local a, argc = argv(keys, args)
  if argc < 4 then return arity('cas') end
  local o = parse_opts(a, 4, ALLOW_CAS)
  if not o or not check_expire(o) then return err(E_SYNTAX) end
  local key = a[1]
  local cur = get_string(key)
  if cur == false then return -1 end
  if cur == nil then return err(E_WRONGTYPE) end
  if cur ~= a[2] then return 0 end
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
  local cur = get_string(key)
  if cur == false then return -1 end
  if cur == nil then return err(E_WRONGTYPE) end
  if cur ~= a[2] then return 0 end
  redis.call('DEL', key)
  return 1
end

-- TYPE key: exstrtype for a versioned string, else the native type.
H.extype = function(keys, args)
  local a, argc = argv(keys, args)
  if argc ~= 2 then return arity('type') end
  local kind = load(a[1])
  if kind == 'ex' then return {ok = 'exstrtype'} end
  if kind == 'none' then return {ok = 'none'} end
  return redis.call('TYPE', a[1])
end
