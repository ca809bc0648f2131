# Computes SCRAM client-final and server-final messages (RFC 5802) with Python's hashlib/hmac,
# an implementation independent of RustCrypto, to cross-check spate-security's test vectors.
import base64, hashlib, hmac, sys
def vector(hash_name, user, password, client_nonce, server_nonce, salt_b64, iterations, extensions=""):
    salt = base64.b64decode(salt_b64)
    salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hash_name).digest()
    stored_key = hashlib.new(hash_name, client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hash_name).digest()
    nonce = client_nonce + server_nonce
    client_first_bare = f"n={user},r={client_nonce}{extensions}"
    server_first = f"r={nonce},s={salt_b64},i={iterations}"
    without_proof = f"c=biws,r={nonce}"
    auth = f"{client_first_bare},{server_first},{without_proof}".encode()
    client_signature = hmac.new(stored_key, auth, hash_name).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, client_signature))
    server_signature = hmac.new(server_key, auth, hash_name).digest()
    print(hash_name, extensions)
    print("server-first:", server_first)
    print("client-final:", f"{without_proof},p={base64.b64encode(proof).decode()}")
    print("server-final:", f"v={base64.b64encode(server_signature).decode()}")
    print("stored_key:", base64.b64encode(stored_key).decode())
    print("server_key:", base64.b64encode(server_key).decode())
for h in ["sha256", "sha512"]:
    vector(h, "user", "pencil", "rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096)
# Kafka ignores client-first extensions it does not know; the AuthMessage still covers them.
vector("sha256", "user", "pencil", "rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096, ",foo=bar")
