"""How a hospital switches the service to its identity provider: a few RCP_* variables, checked at start-up."""

from __future__ import annotations

from pathlib import Path

import pytest

from rcp.config import Settings, SettingsError


def env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"RCP_DATA_DIR": str(tmp_path), "RCP_SECRET_KEY": "k" * 48, **{f"RCP_{k}": v for k, v in values.items()}}


def test_pro_sante_connect_and_the_hospitals_provider_side_by_side(tmp_path: Path) -> None:
    settings = Settings.from_env(env(
        tmp_path, OIDC_PROVIDERS="psc, chu", OIDC_PSC_ISSUER="https://auth.esante.gouv.fr/auth/realms/esante-wallet/",
        OIDC_PSC_CLIENT_ID="rcp-regional", OIDC_PSC_CLIENT_SECRET="s", OIDC_CHU_ISSUER="https://idp.chu-x.fr",
        OIDC_CHU_CLIENT_ID="rcp", OIDC_CHU_LABEL="CHU X", OIDC_CHU_SCOPES="openid profile",
        OIDC_CHU_RPPS_CLAIMS="rpps", LOCAL_PASSWORDS="off"))
    psc, chu = settings.oidc_providers
    assert psc.issuer == "https://auth.esante.gouv.fr/auth/realms/esante-wallet"  # no trailing slash
    assert psc.scopes == ("openid", "scope_all") and psc.acr_values == "eidas1" and psc.userinfo
    assert psc.rpps_claims == ("SubjectNameID", "preferred_username") and psc.label == "Pro Santé Connect"
    assert (chu.label, chu.scopes, chu.rpps_claims, chu.acr_values) == ("CHU X", ("openid", "profile"), ("rpps",), "")
    assert not settings.local_passwords


@pytest.mark.parametrize(("values", "named"), [
    ({"OIDC_PROVIDERS": "psc", "OIDC_PSC_CLIENT_ID": "x"}, "RCP_OIDC_PSC_ISSUER"),
    ({"OIDC_PROVIDERS": "psc", "OIDC_PSC_ISSUER": "https://idp"}, "RCP_OIDC_PSC_CLIENT_ID"),
    ({"OIDC_PROVIDERS": "chu", "OIDC_CHU_ISSUER": "https://idp", "OIDC_CHU_CLIENT_ID": "x",
      "OIDC_CHU_SCOPES": "profile"}, "RCP_OIDC_CHU_SCOPES"),
    ({"OIDC_PROVIDERS": "Bad-Name"}, "RCP_OIDC_PROVIDERS"),
    ({"LOCAL_PASSWORDS": "off"}, "RCP_LOCAL_PASSWORDS"),
    ({"ENV": "production", "PUBLIC_URL": "https://rcp.chu-x.fr", "OIDC_PROVIDERS": "chu",
      "OIDC_CHU_ISSUER": "http://idp.chu-x.fr", "OIDC_CHU_CLIENT_ID": "x"}, "RCP_OIDC_CHU_ISSUER"),
], ids=["no-issuer", "no-client", "no-openid-scope", "bad-name", "nobody-could-sign-in", "http-in-production"])
def test_a_wrong_provider_setting_stops_the_start_naming_the_variable(tmp_path: Path, values: dict[str, str],
                                                                     named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env(tmp_path, **values))
