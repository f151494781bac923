"""The SM2 recommended curve (sm2p256v1, GB/T 32918.5) in pure Python.

Only what the library (gmssl_pyx) does not offer: deriving a public key from a private scalar, and
checking that a point lies on the curve. Signing and verifying stay in the C library.

Why Jacobian coordinates: a scalar multiplication needs ~384 point operations; affine formulas
would need a modular inversion each, projective ones need a single inversion at the end.

Side channels: Python integers are not constant-time. The Montgomery ladder below at least does
the same sequence of operations for every bit and always 256 steps, so the running time does not
reveal the bit pattern through branch structure. This code runs when a key is loaded or checked,
never in response to network input.
"""

from __future__ import annotations

P = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF
A = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC
B = 0x28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93
N = 0xFFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123
GX = 0x32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7
GY = 0xBC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0

COORDINATE_SIZE = 32
_SCALAR_BITS = 256

# A point in Jacobian coordinates (X, Y, Z) stands for the affine (X/Z^2, Y/Z^3); Z == 0 is the
# point at infinity.
_Jacobian = tuple[int, int, int]
_INFINITY: _Jacobian = (1, 1, 0)

# a = -3 (mod p) lets doubling use the cheaper 3(X - Z^2)(X + Z^2) form; assert it once.
assert (A + 3) % P == 0


def is_on_curve(x: int, y: int) -> bool:
    """True iff (x, y) are field elements satisfying y^2 = x^3 + ax + b (mod p).

    The curve has cofactor 1, so every affine point on it generates the full group of order n:
    no separate subgroup check is needed.
    """
    if not (0 <= x < P and 0 <= y < P):
        return False
    return (y * y - (x * x * x + A * x + B)) % P == 0


def _double(pt: _Jacobian) -> _Jacobian:
    x, y, z = pt
    if z == 0 or y == 0:
        return _INFINITY
    delta = z * z % P
    gamma = y * y % P
    beta = x * gamma % P
    alpha = 3 * (x - delta) * (x + delta) % P
    x3 = (alpha * alpha - 8 * beta) % P
    z3 = ((y + z) * (y + z) - gamma - delta) % P
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % P
    return (x3, y3, z3)


def _add(p1: _Jacobian, p2: _Jacobian) -> _Jacobian:
    x1, y1, z1 = p1
    x2, y2, z2 = p2
    if z1 == 0:
        return p2
    if z2 == 0:
        return p1
    z1z1 = z1 * z1 % P
    z2z2 = z2 * z2 % P
    u1 = x1 * z2z2 % P
    u2 = x2 * z1z1 % P
    s1 = y1 * z2 * z2z2 % P
    s2 = y2 * z1 * z1z1 % P
    h = (u2 - u1) % P
    r = (s2 - s1) % P
    if h == 0:
        # Same x: either the same point (double it) or inverses (sum is infinity).
        return _double(p1) if r == 0 else _INFINITY
    hh = h * h % P
    hhh = h * hh % P
    v = u1 * hh % P
    x3 = (r * r - hhh - 2 * v) % P
    y3 = (r * (v - x3) - s1 * hhh) % P
    z3 = h * z1 * z2 % P
    return (x3, y3, z3)


def _to_affine(pt: _Jacobian) -> tuple[int, int] | None:
    x, y, z = pt
    if z == 0:
        return None
    z_inv = pow(z, -1, P)
    z_inv2 = z_inv * z_inv % P
    return (x * z_inv2 % P, y * z_inv2 * z_inv % P)


def multiply(k: int, x: int, y: int) -> tuple[int, int] | None:
    """Return k·(x, y) in affine coordinates, or None for the point at infinity.

    Requires 0 <= k < 2^256 and (x, y) on the curve (ValueError otherwise).
    """
    if not 0 <= k < (1 << _SCALAR_BITS):
        raise ValueError("scalar out of range")
    if not is_on_curve(x, y):
        raise ValueError("point is not on the SM2 curve")
    r0, r1 = _INFINITY, (x, y, 1)
    # Montgomery ladder: invariant r1 = r0 + point; one add and one double per bit, every bit.
    for i in reversed(range(_SCALAR_BITS)):
        if (k >> i) & 1:
            r0, r1 = _add(r0, r1), _double(r1)
        else:
            r1, r0 = _add(r0, r1), _double(r0)
    return _to_affine(r0)


def multiply_base(k: int) -> tuple[int, int] | None:
    """Return k·G (G the standard base point), or None when k ≡ 0 (mod n)."""
    return multiply(k, GX, GY)
