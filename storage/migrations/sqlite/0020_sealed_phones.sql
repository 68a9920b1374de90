-- Officers' and enterprise principals' phones are personal data: sealed with SM4-GCM under the
-- field key, like a case party's ID number. The columns keep their values through the rename; the
-- server seals the clear ones when it starts (`Db::seal_personal_data`: a stored value not
-- starting with `v1:`/`v2:` is clear text, since a phone holds only digits and `-+ ()`).
-- A sealed value cannot be searched, so each phone also has two blind indexes: keyed SM3 over
-- its digits and over its last four digits (`crypto::FieldCipher::seal_phone`).
ALTER TABLE officers RENAME COLUMN phone TO phone_sealed;
ALTER TABLE officers ADD COLUMN phone_index TEXT;
ALTER TABLE officers ADD COLUMN phone_last4_index TEXT;
CREATE INDEX officers_phone_index ON officers (phone_index);
CREATE INDEX officers_phone_last4_index ON officers (phone_last4_index);

ALTER TABLE enterprises RENAME COLUMN principal_phone TO principal_phone_sealed;
ALTER TABLE enterprises ADD COLUMN principal_phone_index TEXT;
ALTER TABLE enterprises ADD COLUMN principal_phone_last4_index TEXT;
CREATE INDEX enterprises_principal_phone_index ON enterprises (principal_phone_index);
CREATE INDEX enterprises_principal_phone_last4_index ON enterprises (principal_phone_last4_index);
